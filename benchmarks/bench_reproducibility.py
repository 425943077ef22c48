"""What reproduces exactly, and by how much results move when the thread count or the CPU's instruction set changes.

    python benchmarks/bench_reproducibility.py [--out runs/bench_reproducibility] [--arms reference,repeat,…]

Runs the same pipelines once per arm, each arm in its own runs root and its own processes (resumable: finished steps
are reused, so an interrupted benchmark continues where it stopped), then compares every numeric metric of every step
with the reference arm's (times and throughputs left out):

  reference  2 threads, the instruction set this CPU has (torch's CPU capability as detected)
  repeat     the reference again, in fresh processes: same machine, same threads → expected bit-identical
  1 thread   threads pinned to 1: reductions split differently → float sums in another order
  AVX2       an AVX2-only CPU, emulated here: torch's kernels (ATEN_CPU_CAPABILITY), MKL (MKL_ENABLE_INSTRUCTIONS),
             oneDNN (ONEDNN_MAX_CPU_ISA), OpenBLAS (OPENBLAS_CORETYPE) and faiss (FAISS_OPT_LEVEL) capped at AVX2
  no SIMD    the same capped at the generic (SSE) level: the far end of what another node can be

Pipelines: `demo-quick` (every stage, a few steps each) and `train-eval` (clipwb-tiny trained 100 steps on shapes,
then evaluated on its 200 test pairs: enough steps for rounding differences to grow through training).

Writes `benchmarks/reproducibility.json` (`--write`: also the generated blocks of the results page and README) and
prints, per arm and pipeline: metrics compared, how many are bit-identical, how many differ by more than 0.001, and the
largest difference with its metric. Emulating an instruction set caps the libraries' dispatch on this CPU; a real
older CPU can differ in more ways (its own MKL code paths), so the measured spread is an estimate, not a bound.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "reproducibility.json"
TOL = 1e-3   # "differs" in the tables: beyond the third decimal, where the reports print numbers

_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
         "OPENBLAS_CORETYPE": "Haswell", "FAISS_OPT_LEVEL": "avx2"}
_GENERIC = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41",
            "OPENBLAS_CORETYPE": "Nehalem", "FAISS_OPT_LEVEL": "generic"}
ARMS = {"reference": (2, {}), "repeat": (2, {}), "1 thread": (1, {}), "AVX2": (2, _AVX2), "no SIMD": (2, _GENERIC)}
_NOT_RESULTS = ("seconds", "time_s", "_per_s", "train_time", "new_samples", "points_computed", "points_cached")


def pipelines(threads: int) -> dict[str, dict]:
    "The pipelines every arm runs, with `threads` pinned."
    from clipwb.pipeline import demo_pipeline
    quick = {**demo_pipeline(quick=True), "threads": threads}
    te = {"name": "train-eval", "threads": threads, "steps": [
        {"name": "train", "stage": "train", "params": dict(model="clipwb-tiny", data="shapes", split="train",
                                                           max_steps=100, batch_size=32, lr=1e-3, warmup=10,
                                                           data_limit=64)},
        {"name": "eval", "stage": "eval", "params": dict(model="{train}", data="shapes", split="test", limit=None)}]}
    return {"demo-quick": quick, "train-eval": te}


def run_arm(name: str, out: Path) -> dict[str, Path]:
    "Run the pipelines of arm `name` under `out/<arm>/` (finished steps reused) → {pipeline: its run folder}."
    threads, env = ARMS[name]
    root = out / name.replace(" ", "_")
    root.mkdir(parents=True, exist_ok=True)
    found = {}
    for pname, pipe in pipelines(threads).items():
        f = root / f"{pname}.yaml"
        f.write_text(yaml.safe_dump(pipe, sort_keys=False))
        print(f"[{name}] {pname} …", flush=True)
        r = subprocess.run([sys.executable, "-m", "clipwb", "pipeline", "run", str(f), "--runs", str(root / "runs")],
                           env={**os.environ, **env, "CLIPWB_CACHE": str(root / "cache")},
                           capture_output=True, text=True)
        if r.returncode: sys.exit(f"[{name}] {pname} failed:\n{r.stderr[-3000:]}")
        found[pname] = sorted((root / "runs" / pname).iterdir())[-1]
    return found


def step_metrics(pipeline_dir: Path) -> dict[str, float]:
    "`{step/metric: value}` of every numeric result metric of a finished pipeline run."
    rec = json.loads((pipeline_dir / "pipeline.json").read_text())
    out = {}
    for s in rec["steps"]:
        m = json.loads((Path(s["run_dir"]) / "metrics.json").read_text())
        num = lambda k, v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                            and not any(x in k for x in _NOT_RESULTS))
        out.update({f"{s['name']}/{k}": float(v) for k, v in m.items() if num(k, v)})
    return out


def compare(ref: dict[str, float], other: dict[str, float]) -> dict:
    "How `other` differs from `ref` on their shared metrics."
    keys = sorted(set(ref) & set(other))
    d = {k: abs(ref[k] - other[k]) for k in keys}
    worst = max(keys, key=lambda k: d[k]) if keys else None
    return {"n": len(keys), "identical": sum(ref[k] == other[k] for k in keys),
            "over_tol": sum(v > TOL for v in d.values()), "max_abs": d[worst] if worst else 0.0, "max_metric": worst}


def table(res: dict) -> str:
    "The markdown table of `res` (what `reproducibility.json` holds)."
    rows = ["| arm | pipeline | metrics | bit-identical | differ > 0.001 | largest difference |", "| --- " * 6 + "|"]
    for arm, per in res["arms"].items():
        for p, c in per.items():
            big = f"{c['max_abs']:.4f} ({c['max_metric']})" if c["max_abs"] else "0"
            rows.append(f"| {arm} | {p} | {c['n']} | {c['identical']} | {c['over_tol']} | {big} |")
    return "\n".join(rows)


def summary(res: dict) -> str:
    "One paragraph for the README: what reproduces exactly and the measured spread."
    rep = res["arms"]["repeat"]
    exact = all(c["identical"] == c["n"] for c in rep.values())
    others = {a: p for a, p in res["arms"].items() if a != "repeat"}
    worst = max((c["max_abs"] for p in others.values() for c in p.values()), default=0.0)
    over = sum(c["over_tol"] for p in others.values() for c in p.values())
    n = sum(c["n"] for p in others.values() for c in p.values())
    return (f"Measured on {res['cpu']} ({res['capability']}), torch {res['torch']}: rerunning the same pipelines on "
            f"the same machine with the same threads gave {'bit-identical' if exact else 'NOT identical'} metrics "
            f"({sum(c['n'] for c in rep.values())} compared). Changing the thread count or capping the instruction "
            f"set (AVX2, generic SSE: what another node may have) moved {over} of {n} metric values by more than "
            f"0.001, the largest by {worst:.3f}; the per-arm table is on the results page.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_reproducibility"))
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated, from: " + ", ".join(ARMS))
    ap.add_argument("--write", action="store_true", help="write benchmarks/reproducibility.json and the doc blocks")
    a = ap.parse_args()
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    if bad := [x for x in arms if x not in ARMS]: sys.exit(f"unknown arm(s) {bad}; arms: {list(ARMS)}")
    if "reference" not in arms: arms.insert(0, "reference")
    out = Path(a.out).resolve()
    runs = {arm: run_arm(arm, out) for arm in arms}
    ref = {p: step_metrics(d) for p, d in runs["reference"].items()}
    env = json.loads((Path(json.loads((runs["reference"]["train-eval"] / "pipeline.json").read_text())["steps"][0]
                           ["run_dir"]) / "env.json").read_text())
    import torch
    res = {"cpu": env.get("cpu", {}).get("model") or "?", "capability": torch.backends.cpu.get_cpu_capability(),
           "torch": torch.__version__, "tolerance": TOL,
           "arms": {arm: {p: compare(ref[p], step_metrics(d)) for p, d in runs[arm].items()}
                    for arm in arms if arm != "reference"}}
    print(table(res)); print(); print(summary(res))
    if a.write:
        RESULTS.write_text(json.dumps(res, indent=1) + "\n")
        sys.path.insert(0, str(ROOT / "tools"))
        from readme_results import write_reproducibility
        for p in write_reproducibility(res): print("wrote", p)


if __name__ == "__main__":
    main()
