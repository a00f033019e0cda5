"""``python -m benchmark perf --scale report``: how ``report``'s time and memory grow with the store, and how the
history's read cost grows over the nights.

For each size (``--sizes``, sample records; default 1k, 10k and 100k) a synthetic store
(:mod:`benchmark.perf.synthetic_store`: 10 models, the last a random-init baseline, x 3 tasks x size / 30 samples,
shards of 64, small maps) is written under ``--work-dir`` and ``python -m benchmark report`` is run on it in a
subprocess of its own, with an empty digest cache (the first report after a nightly hashes every file the night
wrote), so that its wall time and peak resident memory (the report process's ``ru_maxrss``; figure workers are
processes of their own, smaller) belong to that size alone. Then a ``history.csv`` of ``--nights`` nightly
runs of the same 30 (task, model) pairs is read, compared (``history.deltas``, ``with_unrecorded``) and drawn
(every task's trend rows and trend figure), again in a subprocess.

The table (markdown) goes to stdout and to ``--out``; it names the exact commands, so any row can be rerun.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark.config import REPO_ROOT, RunConfig
from benchmark.errors import UserError
from benchmark.perf.synthetic_store import write_history, write_store

N_MODELS = 10
N_TASKS = 3
DEFAULT_SIZES = (1_000, 10_000, 100_000)
DEFAULT_NIGHTS = 365
TARGET_S, TARGET_GB, HISTORY_TARGET_S = 120.0, 4.0, 10.0
GENERATION_WORKERS = 3  # processes writing a synthetic store (not measured: only the report is)


def _run(cmd: list[str], env: dict, log: Path) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB, exit code) of ``cmd``, its output to ``log``. CPU time counts
    the process and the workers it waited for (figures): on a shared machine it moves less than wall time."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=_repo())
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - start, cpu, usage.ru_maxrss / 1024, proc.returncode


def _repo() -> Path:
    return REPO_ROOT


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def measure_size(work: Path, records: int) -> dict:
    """Write the store of ``records`` sample records, run ``report`` on it; the row of the table."""
    per_model = -(-records // (N_MODELS * N_TASKS))  # ceil: at least ``records``
    folder = work / f"store-{records}"
    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    config = write_store(folder, N_MODELS, per_model, workers=GENERATION_WORKERS)
    generated = time.perf_counter() - t
    env = {**os.environ, "I2AM_CACHE_DIR": str(folder / "cache")}
    cmd = [sys.executable, "-m", "benchmark", "report", "--config", str(config)]
    wall, cpu, rss, code = _run(cmd, env, folder / "report.log")
    if code != 0:
        raise RuntimeError(f"report on {folder} exited {code}; see {folder / 'report.log'}")
    return {"records": N_MODELS * N_TASKS * per_model, "per_model": per_model, "store_mb": _du(folder / "store") / 1e6,
            "generate_s": generated, "wall_s": wall, "cpu_s": cpu, "rss_mb": rss,
            "command": f"I2AM_CACHE_DIR={folder / 'cache'} python -m benchmark report --config {config}"}


def history_probe(path: str, config: str) -> dict:
    """Timings (seconds) of what a report does with ``history.csv`` at ``path``: read it, compare the newest
    night with the earlier ones (``deltas``, ``with_unrecorded``), and per task select the trend rows and draw
    the trend figure. Run in a subprocess by :func:`measure_history`."""
    from benchmark.report import history, trends  # heavy: pandas, torch (the figures of report.trends)

    cfg = RunConfig.load(config)
    out = {}
    t = time.perf_counter()
    past = history.read(Path(path))
    out["read_s"], out["rows"] = time.perf_counter() - t, len(past)
    newest = past[past.run_id == past.run_id.max()]
    earlier = past[past.run_id < past.run_id.max()]
    t = time.perf_counter()
    history.deltas(earlier, newest)
    recorded = history.with_unrecorded(earlier, newest)
    out["compare_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for task in sorted(set(past.task)):
        models = sorted(m for m in set(past.model[past.task == task]) if not m.endswith("random-init"))
        version = int(past.task_version[past.task == task].iloc[0])
        rows = trends.trend_rows(recorded, task, version, cfg.scoring_key(), models, ["imacs_g", "masked_psnr"])
        trends.plot_trend(rows, ["imacs_g", "masked_psnr"], Path(path).parent / "figures" / f"{task}-trend.png", task)
    out["trends_s"] = time.perf_counter() - t
    return out


def measure_history(work: Path, nights: int) -> dict:
    """Write a ``history.csv`` of ``nights`` nights (of the 1k store's config) and time :func:`history_probe`."""
    folder = work / f"history-{nights}"
    shutil.rmtree(folder, ignore_errors=True)
    config = write_store(folder, N_MODELS, 1)  # the config (one sample per model: only its keys are used)
    path = write_history(folder / "history.csv", config, nights, 3334)
    code = ("import json; from benchmark.perf.report import history_probe; "
            f"print(json.dumps(history_probe({str(path)!r}, {str(config)!r})))")
    cmd = [sys.executable, "-c", code]
    wall, cpu, rss, rc = _run(cmd, dict(os.environ), folder / "probe.log")
    if rc != 0:
        raise RuntimeError(f"history probe exited {rc}; see {folder / 'probe.log'}")
    found = json.loads((folder / "probe.log").read_text().strip().splitlines()[-1])
    return {**found, "nights": nights, "csv_mb": path.stat().st_size / 1e6, "wall_s": wall, "cpu_s": cpu,
            "rss_mb": rss, "command": f"python -c {code!r}"}


def render(rows: list[dict], hist: dict | None, argv: str) -> str:
    lines = ["# `report` at nightly scale", "",
             f"Synthetic stores (`benchmark/perf/synthetic_store.py`): {N_MODELS} models (the last a random-init baseline) "
             f"x {N_TASKS} tasks x n samples, shards of 64, small maps (latent 8x6, 4x4 tokens, 2 layers x 2 heads, "
             "every level and SRAM, float16), PNGs for the first sample of each job, LPIPS per sample, FID/KID "
             "unavailable. `report` runs in a process of its own with an empty digest cache (as the first report "
             "after a nightly); CPU is its user + system time with the figure workers it waited for; peak RSS is the "
             f"largest process's `ru_maxrss`. Targets: under {TARGET_S:.0f} s and {TARGET_GB:g} GB at 100k "
             f"records on 2 cores; history read and trends under {HISTORY_TARGET_S:.0f} s.", "",
             "| sample records | models x tasks x samples | store on disk | write store | `report` wall | CPU | "
             "wall per 1k records | peak RSS |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['records']:,} | {N_MODELS} x {N_TASKS} x {r['per_model']:,} | {r['store_mb']:,.0f} MB | "
                     f"{r['generate_s']:.0f} s | **{r['wall_s']:.1f} s** | {r['cpu_s']:.1f} s | "
                     f"{1000 * r['wall_s'] / r['records']:.2f} s | "
                     f"**{r['rss_mb']:,.0f} MB** |")
    if hist is not None:
        lines += ["", "| history | rows | `history.csv` | read | deltas + new states | trend rows + figures "
                  "(3 tasks) | total (process) | peak RSS |", "|---|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {hist['nights']} nights x {N_MODELS * N_TASKS} (task, model) | {hist['rows']:,} | "
                  f"{hist['csv_mb']:.1f} MB | {hist['read_s']:.2f} s | {hist['compare_s']:.2f} s | "
                  f"{hist['trends_s']:.2f} s | **{hist['wall_s']:.1f} s** | {hist['rss_mb']:,.0f} MB |"]
    lines += ["", f"Measured with `{argv}` ({os.cpu_count()} cores). Each row's own command:", ""]
    lines += [f"- `{r['command']}`" for r in rows]
    if hist is not None:
        lines.append(f"- `{hist['command']}`")
    return "\n".join(lines)


def _sizes(text: str | None) -> list[int]:
    """``--sizes``: comma-separated sample-record counts, each at least one sample per (model, task)."""
    if text is None:
        return list(DEFAULT_SIZES)
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--sizes: expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < N_MODELS * N_TASKS:
        raise UserError(f"--sizes: each size must be at least {N_MODELS * N_TASKS} (one sample per model and task), "
                        f"got {text!r}")
    return sizes


def main(args) -> int:
    sizes = _sizes(getattr(args, "sizes", None))
    nights = DEFAULT_NIGHTS if getattr(args, "nights", None) is None else args.nights
    if nights < 0:
        raise UserError(f"--nights must be >= 0, got {nights}")
    given = getattr(args, "work_dir", None)
    work = Path(given or tempfile.mkdtemp(prefix="i2am-report-scale-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = []
        for records in sizes:
            rows.append(measure_size(work, records))
            print(f"{records:,} records: report {rows[-1]['wall_s']:.1f} s (CPU {rows[-1]['cpu_s']:.1f} s), peak RSS "
                  f"{rows[-1]['rss_mb']:,.0f} MB", flush=True)
        hist = measure_history(work, nights) if nights > 0 else None
    finally:
        if not given:
            shutil.rmtree(work, ignore_errors=True)
    argv = ("python -m benchmark perf --scale report --sizes " + ",".join(map(str, sizes)) + f" --nights {nights}"
            + (f" --work-dir {given}" if given else ""))
    out = render(rows, hist, argv)
    print(out)
    if getattr(args, "out", None):
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(out + "\n")
    return 0
