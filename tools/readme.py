"""README.md is generated from nbs/index.ipynb, the documentation site's home page.

    python tools/readme.py          (what `make readme` runs)

README.md holds the notebook's markdown cells, with its links to notebooks made relative to the repository root
(`tutorials/01_walkthrough.ipynb` becomes `nbs/tutorials/01_walkthrough.ipynb`), so they work both on the site and
on a forge's README view. tests/test_docs.py checks that README.md is what this writes.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_NOTE = ("<!-- Generated from nbs/index.ipynb by `make readme` (tools/readme.py): "
               "edit the notebook, not this file. -->")


def read_notebook(path: str | Path) -> dict:
    "The notebook at `path` as a dict; a `ValueError` names a file that is not one."
    p = Path(path)
    try: return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e: raise ValueError(f"{p} is not a notebook (invalid JSON: {e})") from None


def cell_source(cell: dict) -> str:
    "A cell's source as one string."
    s = cell.get("source", "")
    return s if isinstance(s, str) else "".join(s)


def atomic_write_text(path: str | Path, text: str) -> Path:
    "Write `text` to `path` through a temporary file in the same folder, so readers never see half a file."
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f: f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True); raise
    return p


def write_notebook(path: str | Path, nb: dict) -> Path:
    "Write `nb` as nbdev_clean writes notebooks (sorted keys, one-space indent, UTF-8, final newline)."
    return atomic_write_text(path, json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n")


_NB_LINK = re.compile(r"(\]\()([^()\s:#]+?\.ipynb)(#[^()\s]*)?(\))")


def relink(md: str, fn) -> str:
    "`md` with the target of every relative markdown link to a notebook replaced by `fn(target)`; anchors are kept."
    return _NB_LINK.sub(lambda m: f"{m.group(1)}{fn(m.group(2))}{m.group(3) or ''}{m.group(4)}", md)


def readme_text(index: str | Path | None = None) -> str:
    ("README.md's text: the markdown cells of `index` (default nbs/index.ipynb), notebook links made relative to "
     "the root.")
    p = Path(index) if index else ROOT / "nbs" / "index.ipynb"
    cells = read_notebook(p)["cells"]
    if bad := [i for i, c in enumerate(cells) if c["cell_type"] != "markdown"]:
        raise ValueError(f"{p}: cells {bad} are not markdown; the home page (and so README.md) holds only markdown")
    return "\n\n".join([README_NOTE, *(relink(cell_source(c).strip("\n"), lambda t: f"nbs/{t}") for c in cells)]) + "\n"


def write_readme(root: str | Path | None = None) -> Path:
    "Regenerate README.md in `root` (default: this checkout) from its nbs/index.ipynb."
    root = Path(root) if root else ROOT
    return atomic_write_text(root / "README.md", readme_text(root / "nbs" / "index.ipynb"))


if __name__ == "__main__":
    print("wrote", write_readme(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
