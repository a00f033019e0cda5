"""``python -m benchmark``: the harness's command line.

    run --config C       generate + capture every (task, model, shard) not yet stored; then report
                         [--tasks a,b] [--models x,y] [--limit N] [--device cuda:0] [--output-dir D] [--wait]
                         [--fail-on-regression]
    report --config C    scores, analyses and leaderboards from the store alone [--fail-on-regression]
    verify --config C    check every stored file against its recorded size and SHA-256; set damaged jobs aside
    ls [--config C]      list tasks, adapters, configs (and a run's stored jobs)
    validate --config C  parse and check a config without running it
    train                (re)train the embedded-default mini models
    perf                 capture-overhead benchmark
    doctor               check this machine (devices, dtypes, metric weights, capture, decode, Dask) [--config C]

Exit codes: 0 done; 1 some job, check or problem failed (named in the output); 2 a usage or config error (one
line, ``error: ...``; ``--debug`` shows the traceback); 3 with ``--fail-on-regression``, a regression since the last
comparable run was flagged and nothing failed (everything is written first; ``results/regressions.json``); 75 the
store is in use by another command; 130 / 143 interrupted by SIGINT / SIGTERM (what was finished is kept: rerun the
same command to resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import signal
import sys
import time

import yaml

from benchmark.config import REPO_ROOT, ConfigError, RunConfig, TaskConfig, check_config
from benchmark.errors import UserError
from benchmark.registry import ADAPTERS, DATASET_FORMATS, METHODS, SAMPLE_METRICS, SET_METRICS
from benchmark.report.freshness import inputs_digest, is_current, mark_current
from benchmark.store.lock import StoreBusy, StoreLock
from benchmark.verify import verify_store

EXIT_FAILED, EXIT_USAGE, EXIT_REGRESSION, EXIT_BUSY = 1, 2, 3, 75


class UsageError(UserError):
    """A mistake in how a command was called (bad option value, missing file): one line, exit 2."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds like KeyboardInterrupt, so every ``finally`` (cluster, lock) runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    # Once is enough: a second signal while shutting down must not cut the clean-up short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _load_config(args, narrowed: bool = True):
    """The config file with the command line's overrides (output places; task, model, sample and device
    selection), as lm-evaluation-harness users expect: nothing needs editing the file. ``narrowed=False``: the
    whole config (output places and device only), which the leaderboard pages always cover."""
    overrides = {}
    if getattr(args, "output_dir", None):
        overrides["output_dir"] = args.output_dir
    if getattr(args, "leaderboard_dir", None):
        overrides["leaderboard_dir"] = args.leaderboard_dir
    cfg = RunConfig.load(args.config, overrides)
    tasks, models = _split(getattr(args, "tasks", None)), _split(getattr(args, "models", None))
    limit, device = getattr(args, "limit", None), getattr(args, "device", None)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    if narrowed and (tasks or models or limit is not None) or device:
        cfg = cfg.select(tasks if narrowed else None, models if narrowed else None, limit if narrowed else None,
                         device)
    return cfg


def _report_config(args):
    """(config, results folder) of the pages a report writes. Narrowing by ``--tasks`` / ``--models`` never
    narrows the pages (a model not run this time keeps its stored rows); ``--limit N`` pages and frames go to
    ``<output dir>/limit-<N>/`` unless ``--leaderboard-dir`` is given, so they never replace the full run's."""
    if getattr(args, "limit", None) is None:
        cfg = _load_config(args, narrowed=False)
        return cfg, cfg.out_dir / "results"
    cfg = _load_config(args)
    own = cfg.out_dir / f"limit-{args.limit}"
    if getattr(args, "leaderboard_dir", None):
        return cfg, own / "results"
    return dataclasses.replace(cfg, leaderboard_dir=str(own / "leaderboards")), own / "results"


def _pre_run_checks(cfg, scheduler: str | None = None) -> None:
    """What must hold before any job starts (adapter targets that resolve, a device this machine has when the
    jobs run here): a config error otherwise."""
    check_config(cfg, scheduler=scheduler)


def _cmd_run(args) -> int:
    from benchmark.run.runner import RunSummary, execute, new_run_id, write_run_metadata  # heavy: the job code

    if args.fail_on_regression and args.no_report:
        raise UsageError("--fail-on-regression needs the report: drop --no-report (python -m benchmark run)")
    cfg = _load_config(args)
    _pre_run_checks(cfg, args.scheduler)
    print("# resolved config")
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    out = cfg.out_dir
    summary = RunSummary(new_run_id(), 0, 0, 0)
    with StoreLock(out, "run", wait=args.wait) as lock:
        _STATE.update(summary=summary, lock=lock)
        (out / "resolved_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        execute(cfg, scheduler=args.scheduler, workers=args.workers, summary=summary, phase=lock.phase)
        write_run_metadata(cfg, summary)
        print(f"jobs: {summary.jobs} ({summary.skipped} already stored, {summary.finished} run, "
              f"{len(summary.failed)} failed) in {summary.seconds:.1f}s"
              + (f"; FID/KID/LPIPS inputs of {summary.refreshed} stored job(s) recomputed" if summary.refreshed else "")
              + (f"; new per-sample metrics of {summary.metrics_added} stored job(s) computed from their images"
                 if summary.metrics_added else ""))
        for f in summary.metrics_unavailable:
            print(f"WARNING {f['job']}: {f['error']}", file=sys.stderr)
        for f in summary.plan_failures:
            print(f"FAILED task {f['task']} model {f['model']} ({f['where']}): {f['error']}", file=sys.stderr)
        for f in summary.failed:
            print(f"FAILED {f['job']}: {f['error']}", file=sys.stderr)
        regressed = 0
        if not args.no_report:
            lock.phase("report")
            regressed = _report(*_report_config(args), args.fail_on_regression)
    return regressed if summary.ok else EXIT_FAILED


def _report(cfg, results_dir, fail_on_regression: bool = False) -> int:
    """Build the pages of ``cfg`` unless they are current (same store, settings and code as when last built).
    Returns :data:`EXIT_REGRESSION` when ``fail_on_regression`` and the report flagged a regression, else 0."""
    t = time.perf_counter()
    digest = inputs_digest(cfg)
    found = _regressions(results_dir) if fail_on_regression else []
    if is_current(cfg, digest) and found is not None:
        print(f"leaderboards: {cfg.leaderboard_path / 'README.md'} (current: the store, settings and code are "
              f"unchanged since they were built)")
    else:
        from benchmark.report import build_report  # heavy: pandas, scipy, the figures

        paths = build_report(cfg, results_dir)
        mark_current(cfg, digest)
        print(f"leaderboards: {paths['index']} ({time.perf_counter() - t:.1f}s)")
        found = _regressions(results_dir) if fail_on_regression else []
    for r in found:
        print(f"REGRESSION {r['task']}/{r['model']} {r['metric']}: {r['delta']:+.4g} [{r['ci'][0]:+.4g}, "
              f"{r['ci'][1]:+.4g}], p {r['p_value']:.2g}, n {r['n']} (run {r['old_run']} -> {r['new_run']})",
              file=sys.stderr)
    return EXIT_REGRESSION if found else 0


def _regressions(results_dir) -> list[dict] | None:
    """The regressions the last report flagged (``results/regressions.json``); None when it is missing."""
    from benchmark.report.changes import read_regressions  # heavy: pandas, scipy

    return read_regressions(results_dir)


def _cmd_report(args) -> int:
    cfg, results_dir = _report_config(args)
    with StoreLock(cfg.out_dir, "report", wait=args.wait) as lock:
        _STATE.update(lock=lock)
        lock.phase("report")
        return _report(cfg, results_dir, args.fail_on_regression)


def _cmd_verify(args) -> int:
    """Check every job of the run folder's store; set the damaged ones aside; exit 1 when any was damaged."""
    cfg = _load_config(args, narrowed=False)
    with StoreLock(cfg.out_dir, "verify", wait=args.wait) as lock:
        _STATE.update(lock=lock)
        lock.phase("verify")
        result = verify_store(cfg.out_dir / "store", progress=True)
    for job, problems, moved in result.damaged:
        for problem in problems:
            print(f"DAMAGED {job}: {problem}", file=sys.stderr)
        print(f"  set aside: {moved}", file=sys.stderr)
    print(f"verify: {result.jobs} job(s), {result.files} file(s), {result.bytes / 1e6:.1f} MB checked in "
          f"{result.seconds:.1f}s; {len(result.damaged)} damaged"
          + (" (moved under store/quarantine/; the next `run` regenerates them)" if result.damaged else ""))
    return EXIT_FAILED if result.damaged else 0


def _cmd_validate(args) -> int:
    """Parse and check a config, then check what a run needs: dataset roots that hold samples, local model
    folders, hub ids in the local cache. Exit 2 for a bad config, 1 when something a run needs is missing."""
    cfg = _load_config(args)
    _pre_run_checks(cfg, args.scheduler)
    from benchmark.run.tasks import check_run  # heavy: numpy, PIL (the procedural generators)

    n_models = sum(len(t.models) for t in cfg.tasks)
    problems = check_run(cfg)
    print(f"config ok: {cfg.name} ({len(cfg.tasks)} task entries, {n_models} models)")
    for p in problems:
        print(f"missing: {p}", file=sys.stderr)
    print("ready to run" if not problems else f"{len(problems)} problem(s): a run would report these as failures")
    return 1 if problems else 0


def _cmd_ls(args) -> int:
    print("tasks:")
    for p in sorted((REPO_ROOT / "tasks").glob("*/*.yaml")):
        t = TaskConfig.load(p)
        print(f"  {t.name:<22} v{t.version}  {p.relative_to(REPO_ROOT)}  {t.description}")
    for title, reg in (("dataset formats", DATASET_FORMATS), ("adapters", ADAPTERS), ("per-sample metrics", SAMPLE_METRICS),
                       ("set metrics", SET_METRICS), ("attribution methods", METHODS)):
        print(f"{title}:", ", ".join(reg.names()))
    print("configs:", ", ".join(str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "configs").glob("*.yaml"))))
    if args.config:
        from benchmark.report.store_view import load_view  # heavy: pandas

        cfg = _load_config(args)
        view = load_view(cfg)
        print(f"run {cfg.name}: stored under {cfg.out_dir / 'store'}")
        for sm in view.models:
            fails = f", {len(sm.job_failures)} failed job(s)" if sm.job_failures else ""
            print(f"  {sm.task}/{sm.model}: {len(sm.sample_ids)} samples stored in {len(sm.records)} job(s){fails}")
            for f in sm.job_failures:
                print(f"    failed job {f['key']}: {f['error']}")
    return 0


def _cmd_train(args) -> int:
    from benchmark.training.embedded import EMBEDDED_TASKS  # heavy: numpy, PIL
    from benchmark.training.train import TrainPlan, train_all  # heavy: torch, diffusers

    for name in args.task or []:
        if name not in EMBEDDED_TASKS:
            close = difflib.get_close_matches(name, list(EMBEDDED_TASKS), n=1)
            raise UsageError(f"unknown embedded task {name!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                                   f"; known: {sorted(EMBEDDED_TASKS)}")
                             + " (train --task)")
    plan = TrainPlan(**{k: v for k, v in {"steps": args.steps, "cls_steps": args.cls_steps, "dit_steps": args.dit_steps,
                                            "vae_steps": args.vae_steps, "seed": args.seed}.items() if v is not None})
    train_all(plan, tasks=args.task)
    return 0


def _cmd_perf(args) -> int:
    from benchmark.perf.capture import main as perf_main  # heavy: torch, diffusers

    return perf_main(args)


def _cmd_doctor(args) -> int:
    """One line per check of this machine; exit 1 when a check failed or something required is missing."""
    from benchmark.doctor import run_doctor  # heavy: the job code its checks call

    cfg = _load_config(args) if args.config else None
    start = time.perf_counter()
    outcomes = run_doctor(args.device, cfg)
    failing = [o.name for o in outcomes if o.fails]
    print(f"doctor: {len(outcomes)} checks in {time.perf_counter() - start:.1f}s; "
          + (f"not ready: {', '.join(failing)}" if failing else "ready"))
    return EXIT_FAILED if failing else 0


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``error: ... (python -m benchmark run)``), exit 2, like every other user error."""

    def error(self, message):
        raise UsageError(f"{message} ({self.prog}; --help lists the options)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m benchmark", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of usage and config errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(p, required=True):
        p.add_argument("--config", required=required, help="run config YAML (see configs/)")
        p.add_argument("--output-dir", help="override output_dir (default runs/<name>)")
        p.add_argument("--leaderboard-dir", help="override leaderboard_dir (default <output dir>/leaderboards)")
        p.add_argument("--tasks", help="comma-separated task names (or task paths) of the config to keep")
        p.add_argument("--models", help="comma-separated model names of the config to keep")
        p.add_argument("--limit", type=int, help="the first N samples of every task (stored shards are reused)")
        return p

    def fails_on_regression(p):
        p.add_argument("--fail-on-regression", action="store_true",
                       help=f"exit {EXIT_REGRESSION} when a regression since the last comparable run is flagged "
                            "(README 'Regression alerts'; written to results/regressions.json)")
        return p

    def waits(p):
        p.add_argument("--wait", action="store_true", help="wait while another command holds the run folder "
                                                           "(default: exit at once, code 75)")
        return p

    p = waits(with_config(sub.add_parser("run", help="run a config")))
    p.add_argument("--scheduler", help="inline | local | tcp://host:port | path to a scheduler file")
    p.add_argument("--workers", type=int, help="local cluster workers (default: cluster.workers)")
    p.add_argument("--no-report", action="store_true", help="skip the report step")
    fails_on_regression(p)
    p.add_argument("--device", help="cuda, cuda:0, cpu ... (default: the config's device)")
    p.set_defaults(func=_cmd_run)
    p = waits(with_config(sub.add_parser("report", help="rebuild leaderboards from the store alone (scores at the "
                                                         "config's lambda / threshold; never generates)")))
    fails_on_regression(p).set_defaults(func=_cmd_report)
    p = sub.add_parser("verify", help="check every stored file against its recorded size and SHA-256; damaged jobs "
                                      "are moved under store/quarantine/ and the next run regenerates them")
    p.add_argument("--config", required=True, help="run config YAML (see configs/)")
    p.add_argument("--output-dir", help="override output_dir (default runs/<name>)")
    waits(p).set_defaults(func=_cmd_verify)
    p = with_config(sub.add_parser("validate", help="check a config"))
    p.add_argument("--device", help="check this device instead of the config's (cuda, cuda:0, cpu ...)")
    p.add_argument("--scheduler", help="check for this scheduler (as `run --scheduler`)")
    p.set_defaults(func=_cmd_validate)
    with_config(sub.add_parser("ls", help="list tasks, adapters, configs, stored jobs"), required=False).set_defaults(func=_cmd_ls)
    p = sub.add_parser("train", help="(re)train the embedded-default mini models; resumes from checkpoints")
    p.add_argument("--task", action="append", help="task name (repeatable); default: all")
    p.add_argument("--steps", type=int)
    p.add_argument("--cls-steps", type=int)
    p.add_argument("--vae-steps", type=int)
    p.add_argument("--dit-steps", type=int)
    p.add_argument("--seed", type=int)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("evaluate-models", help="reference-swap test and baselines for the mini models; writes model cards")
    p.add_argument("--task", action="append")
    p.add_argument("--samples", type=int, default=64)
    p.set_defaults(func=lambda a: __import__("benchmark.training.evaluate", fromlist=["main"]).main(a))
    p = sub.add_parser("perf", help="capture overhead and accumulator memory benchmark")
    p.add_argument("--model", help="reference_unet model folder (default: the shipped object_inpainting full model)")
    p.add_argument("--vae", help="VAE folder for --model")
    p.add_argument("--steps", type=int, help="sampling steps (default 20; 2 for --scale real)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="write the table (markdown) here too")
    p.add_argument("--scale", choices=["mini", "sd15", "real", "report"], default="mini",
                   help="mini: a shipped mini model; sd15: a random-init SD-1.5-shaped UNet (64x48 latent, 257 "
                        "tokens); real: every adapter end to end at its published resolution; report: `report` on "
                        "synthetic stores of 1k / 10k / 100k sample records and a year of history")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: auto, CUDA where there is one)")
    p.add_argument("--adapter", action="append", help="--scale real: only this adapter (repeatable)")
    p.add_argument("--reduced", action="store_true", help="--scale real: the real-resolution tests' reduced widths")
    p.add_argument("--precision", action="store_true",
                   help="--scale real: also a bfloat16 run of each model against float32 on the same inputs")
    p.add_argument("--sizes", help="--scale report: sample records per synthetic store, comma-separated "
                                   "(default 1000,10000,100000)")
    p.add_argument("--nights", type=int, help="--scale report: nightly runs in the synthetic history (default 365)")
    p.add_argument("--work-dir", help="--scale report: keep the synthetic stores here (default: a temporary folder, "
                                      "removed afterwards)")
    p.set_defaults(func=_cmd_perf)
    p = sub.add_parser("doctor", help="check this machine before a first run: devices, dtypes, metric weights, "
                                      "the config's models and datasets, capture correctness, decode, a Dask worker")
    p.add_argument("--config", help="also check this config's models and dataset roots (and use its device)")
    p.add_argument("--device", help="cuda, cuda:0, cpu ... (default: the config's device, else auto)")
    p.set_defaults(func=_cmd_doctor)
    return parser


_STATE: dict = {}  # what an interrupted command reports: the run's summary, the lock (its phase)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's to fix: printed as one line, exit 2."""
    return UserError, ConfigError


def _one_line(err: BaseException) -> str:
    """``<what> (<where>)``: messages that start with where the problem is (``file.yaml: ...``,
    ``config.tasks[0]: ...``) are turned around so that what went wrong comes first; always one line."""
    text = " ".join(str(err).split())
    where, sep, what = text.partition(": ")
    if sep and where and " " not in where and what:
        return f"{what} ({where})"
    return text


def _interrupted(signum: int) -> int:
    name = signal.Signals(signum).name
    lock, summary = _STATE.get("lock"), _STATE.get("summary")
    where = f" during {lock.info.get('phase')}" if lock is not None and lock.info else ""
    if summary is not None and summary.jobs:
        left = max(summary.pending - summary.finished - len(summary.failed), 0)
        kept = summary.skipped + summary.finished
        what = f"{kept} of {summary.jobs} job(s) finished and kept, {left} pending"
    elif summary is not None:
        what = "nothing was run yet"
    else:
        what = "nothing stored was changed"
    print(f"interrupted by {name}{where}: {what}; rerun the same command to resume", file=sys.stderr)
    return 128 + signum


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    _STATE.clear()
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(message)s")
        return args.func(args)
    except Interrupted as err:
        return _interrupted(err.signum)
    except Exception as err:
        if isinstance(err, StoreBusy):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BUSY
        if not isinstance(err, _user_errors()) or debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main())
