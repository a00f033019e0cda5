"""Time the smoke config inline, on one and on two LocalCluster workers (not a test: no ``test_`` prefix).

    python tests/runner/bench_runner.py [--samples 4] [--steps 2] [--out table.md]

Prints a markdown table: the run's wall seconds (cluster start-up included), the ratio to one worker, and
per sample the job stages recorded in each result.json ``timings`` (generation + capture, maps + store,
metrics) and the time ``build_report`` takes to render the leaderboards from the store.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark.run.jobs import job_dir  # noqa: E402
from benchmark.report import build_report  # noqa: E402
from benchmark.run.runner import execute, plan_jobs  # noqa: E402

from runner_helpers import make_model, smoke_config  # noqa: E402

LAYOUTS = (("inline", "inline", None), ("1 worker", "local", 1), ("2 workers", "local", 2))
STAGES = ("generate_capture", "maps_store", "metrics")


def measure(root: Path, model: Path, scheduler: str, workers: int | None, samples: int, steps: int) -> dict:
    cfg = smoke_config(root, model, max_samples=samples, sampling={"num_inference_steps": steps})
    t0 = time.perf_counter()
    summary = execute(cfg, scheduler=scheduler, workers=workers)
    wall = time.perf_counter() - t0
    if summary.failed or summary.finished != summary.jobs:
        raise RuntimeError(f"{scheduler}/{workers}: {summary}")
    records = [json.loads((job_dir(cfg, j) / "result.json").read_text()) for j in plan_jobs(cfg).jobs]
    n = sum(r["n_samples"] for r in records)
    per_sample = {s: sum(r["timings"][s] for r in records) / n for s in STAGES}
    t0 = time.perf_counter()
    build_report(cfg)
    return {"wall": wall, "jobs": summary.jobs, "samples": n, **per_sample, "report": time.perf_counter() - t0}


def table(results: dict[str, dict]) -> str:
    base = results["1 worker"]["wall"]
    lines = ["| layout | jobs | samples | wall s | wall / 1 worker | generate+capture s/sample | maps+store s/sample "
             "| metrics s/sample | report s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['jobs']} | {r['samples']} | {r['wall']:.1f} | {r['wall'] / base:.2f} | "
                     f"{r['generate_capture']:.3f} | {r['maps_store']:.3f} | {r['metrics']:.3f} | {r['report']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", help="write the table here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        root = Path(tmp)
        model = make_model(root / "model")
        results = {name: measure(root / name.replace(" ", "-"), model, scheduler, workers, args.samples, args.steps)
                   for name, scheduler, workers in LAYOUTS}
    text = table(results)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
