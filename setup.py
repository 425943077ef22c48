"""Packaging driven by settings.ini (the nbdev 2.4 convention): name, version and requirements live there."""
from configparser import ConfigParser
from pathlib import Path

import shutil

import setuptools
from setuptools.command.build_py import build_py

# An installed wheel has no checkout: the stage notebooks and the built-in data cards travel inside the
# package as clipwb/_data/{stages,data_cards}, copied from nbs/stages and data_cards at build time (no second
# copy in the repository to keep in sync). clipwb.core.package_data finds them with importlib.resources.
PACKAGE_DATA = {"stages": ("nbs/stages", "*.ipynb"), "data_cards": ("data_cards", "*.md")}


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        here = Path(__file__).resolve().parent
        for name, (src, pattern) in PACKAGE_DATA.items():
            out = Path(self.build_lib) / "clipwb" / "_data" / name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted((here / src).glob(pattern)):
                shutil.copyfile(f, out / f.name)


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
    cmdclass={"build_py": BuildPyWithData},
    zip_safe=False,
)
