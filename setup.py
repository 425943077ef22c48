"""Packaging driven by settings.ini (the nbdev 2.4 convention): name, version and requirements live there."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).with_name("settings.ini"), encoding="utf-8")
cfg = cfg["DEFAULT"]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    license="Apache-2.0",
    author=cfg["author"],
    author_email=cfg["author_email"],
    url=cfg["git_url"],
    python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["clipwb", "clipwb.*"]),
    include_package_data=True,
    package_data={"clipwb": ["model_configs/*.json", "assets/*"]},
    install_requires=cfg["requirements"].split(),
    extras_require={k: cfg[f"{k}_requirements"].split() for k in ("dev", "cpu", "gpu")},
    entry_points={"console_scripts": cfg["console_scripts"].split()},
    zip_safe=False,
)
