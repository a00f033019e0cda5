"""``python -m benchmark``: the harness's command line.

    run --config C       generate + capture every (task, model, shard) not yet stored; then report
                         [--tasks a,b] [--models x,y] [--limit N] [--device cuda:0] [--output-dir D]
    report --config C    scores, analyses and leaderboards from the store alone
    ls [--config C]      list tasks, adapters, configs (and a run's stored jobs)
    validate --config C  parse and check a config without running it
    train                (re)train the embedded-default mini models
    perf                 capture-overhead benchmark
"""

from __future__ import annotations

import argparse
import logging
import sys

import yaml


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _load_config(args):
    """The config file with the command line's overrides (output places; task, model, sample and device
    selection), as lm-evaluation-harness users expect: nothing needs editing the file."""
    from benchmark.config import RunConfig

    overrides = {}
    if getattr(args, "output_dir", None):
        overrides["output_dir"] = args.output_dir
    if getattr(args, "leaderboard_dir", None):
        overrides["leaderboard_dir"] = args.leaderboard_dir
    cfg = RunConfig.load(args.config, overrides)
    tasks, models = _split(getattr(args, "tasks", None)), _split(getattr(args, "models", None))
    limit, device = getattr(args, "limit", None), getattr(args, "device", None)
    if tasks or models or limit is not None or device:
        cfg = cfg.select(tasks, models, limit, device)
    return cfg


def _cmd_run(args) -> int:
    from benchmark.runner import execute, write_run_metadata

    cfg = _load_config(args)
    print("# resolved config")
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "resolved_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    summary = execute(cfg, scheduler=args.scheduler, workers=args.workers)
    write_run_metadata(cfg, summary)
    print(f"jobs: {summary.jobs} ({summary.skipped} already stored, {summary.finished} run, "
          f"{len(summary.failed)} failed) in {summary.seconds:.1f}s"
          + (f"; FID/KID/LPIPS inputs of {summary.refreshed} stored job(s) recomputed" if summary.refreshed else ""))
    for f in summary.plan_failures:
        print(f"FAILED task {f['task']} model {f['model']} ({f['where']}): {f['error']}", file=sys.stderr)
    for f in summary.failed:
        print(f"FAILED {f['job']}: {f['error']}", file=sys.stderr)
    if not args.no_report:
        from benchmark.report import build_report

        paths = build_report(cfg, executed_run_id=summary.run_id if summary.finished else None)
        print(f"leaderboards: {paths['index']}")
    return 0 if summary.ok else 1


def _cmd_report(args) -> int:
    import time

    from benchmark.report import build_report

    t = time.perf_counter()
    paths = build_report(_load_config(args))
    print(f"leaderboards: {paths['index']} ({time.perf_counter() - t:.1f}s)")
    return 0


def _cmd_validate(args) -> int:
    """Parse and check a config, then check what a run needs: dataset roots that hold samples, local model
    folders, hub ids in the local cache. Exit 2 for a bad config, 1 when something a run needs is missing."""
    from benchmark.config import ConfigError

    try:
        cfg = _load_config(args)
    except (ConfigError, FileNotFoundError, KeyError) as err:
        print(f"invalid: {err}", file=sys.stderr)
        return 2
    from benchmark.tasks import check_run

    n_models = sum(len(t.models) for t in cfg.tasks)
    problems = check_run(cfg)
    print(f"config ok: {cfg.name} ({len(cfg.tasks)} task entries, {n_models} models)")
    for p in problems:
        print(f"missing: {p}", file=sys.stderr)
    print("ready to run" if not problems else f"{len(problems)} problem(s): a run would report these as failures")
    return 1 if problems else 0


def _cmd_ls(args) -> int:
    from benchmark.config import REPO_ROOT, TaskConfig
    from benchmark.registry import ADAPTERS, DATASET_FORMATS, METHODS, SAMPLE_METRICS, SET_METRICS

    print("tasks:")
    for p in sorted((REPO_ROOT / "tasks").glob("*/*.yaml")):
        t = TaskConfig.load(p)
        print(f"  {t.name:<22} v{t.version}  {p.relative_to(REPO_ROOT)}  {t.description}")
    for title, reg in (("dataset formats", DATASET_FORMATS), ("adapters", ADAPTERS), ("per-sample metrics", SAMPLE_METRICS),
                       ("set metrics", SET_METRICS), ("attribution methods", METHODS)):
        print(f"{title}:", ", ".join(reg.names()))
    print("configs:", ", ".join(str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "configs").glob("*.yaml"))))
    if args.config:
        from benchmark.report.store_view import load_view

        cfg = _load_config(args)
        view = load_view(cfg)
        print(f"run {cfg.name}: stored under {cfg.out_dir / 'store'}")
        for sm in view.models:
            fails = f", {len(sm.job_failures)} failed job(s)" if sm.job_failures else ""
            print(f"  {sm.task}/{sm.model}: {len(sm.sample_ids)} samples stored in {len(sm.records)} job(s){fails}")
    return 0


def _cmd_train(args) -> int:
    from benchmark.training.train import TrainPlan, train_all

    plan = TrainPlan(**{k: v for k, v in {"steps": args.steps, "cls_steps": args.cls_steps, "dit_steps": args.dit_steps,
                                            "vae_steps": args.vae_steps, "seed": args.seed}.items() if v is not None})
    train_all(plan, tasks=args.task)
    return 0


def _cmd_perf(args) -> int:
    from benchmark.perf import main as perf_main

    return perf_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p, required=True):
        p.add_argument("--config", required=required, help="run config YAML (see configs/)")
        p.add_argument("--output-dir", help="override output_dir (default runs/<name>)")
        p.add_argument("--leaderboard-dir", help="override leaderboard_dir (default <output dir>/leaderboards)")
        p.add_argument("--tasks", help="comma-separated task names (or task paths) of the config to keep")
        p.add_argument("--models", help="comma-separated model names of the config to keep")
        p.add_argument("--limit", type=int, help="the first N samples of every task (stored shards are reused)")
        return p

    p = with_config(sub.add_parser("run", help="run a config"))
    p.add_argument("--scheduler", help="inline | local | tcp://host:port | path to a scheduler file")
    p.add_argument("--workers", type=int, help="local cluster workers (default: cluster.workers)")
    p.add_argument("--no-report", action="store_true", help="skip the report step")
    p.add_argument("--device", help="cuda, cuda:0, cpu ... (default: the config's device)")
    p.set_defaults(func=_cmd_run)
    p = with_config(sub.add_parser("report", help="rebuild leaderboards from the store alone (scores at the config's "
                                                   "lambda / threshold; never generates)"))
    p.set_defaults(func=_cmd_report)
    with_config(sub.add_parser("validate", help="check a config")).set_defaults(func=_cmd_validate)
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
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="write the table (markdown) here too")
    p.add_argument("--scale", choices=["mini", "sd15"], default="mini",
                   help="mini: a shipped mini model; sd15: a random-init SD-1.5-shaped UNet (64x48 latent, 257 tokens)")
    p.set_defaults(func=_cmd_perf)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
