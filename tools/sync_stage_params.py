"""Rewrite the `parameters` cell of every stage notebook (nbs/stages) from its stage's config class.

The config class is the one place a stage's parameters are written (names, types, defaults, and the
help in the comment beside each field); run this after changing one. `--check` rewrites nothing and
exits with status 1 when a notebook differs (what tests/test_hygiene.py checks).
"""
import argparse
import sys

from clipwb.notebooks import sync_parameter_cells


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report the notebooks that differ (exit status 1)")
    a = ap.parse_args(argv)
    changed = sync_parameter_cells(check=a.check)
    for p in changed:
        print(f"{'differs' if a.check else 'rewrote'}: {p}")
    if a.check and changed:
        print("run `make sync-params` (python tools/sync_stage_params.py) to regenerate them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
