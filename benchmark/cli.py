"""``python -m benchmark``: the harness's command line.

    run --config C       generate + capture + score every (task, model, shard); then report
    report --config C    rebuild frames, analyses and leaderboards from the store only
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


def _load_config(args):
    from benchmark.config import RunConfig

    overrides = {}
    if getattr(args, "output_dir", None):
        overrides["output_dir"] = args.output_dir
    if getattr(args, "leaderboard_dir", None):
        overrides["leaderboard_dir"] = args.leaderboard_dir
    return RunConfig.load(args.config, overrides)


def _cmd_run(args) -> int:
    from benchmark.runner import execute, write_run_metadata

    cfg = _load_config(args)
    print("# resolved config (hash %s)" % cfg.hash())
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "resolved_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    summary = execute(cfg, scheduler=args.scheduler, workers=args.workers)
    write_run_metadata(cfg, summary)
    print(f"jobs: {summary.jobs} ({summary.skipped} already done, {summary.finished} run, "
          f"{len(summary.failed)} failed) in {summary.seconds:.1f}s")
    for f in summary.failed:
        print(f"FAILED {f['job']}: {f['error']}", file=sys.stderr)
    if not args.no_report:
        from benchmark.report import build_report

        paths = build_report(cfg)
        print(f"leaderboards: {paths['index']}")
    return 1 if summary.failed else 0


def _cmd_report(args) -> int:
    from benchmark.report import build_report

    paths = build_report(_load_config(args), record_history=args.record_history)
    print(f"leaderboards: {paths['index']}")
    return 0


def _cmd_validate(args) -> int:
    from benchmark.config import ConfigError

    try:
        cfg = _load_config(args)
    except (ConfigError, FileNotFoundError, KeyError) as err:
        print(f"invalid: {err}", file=sys.stderr)
        return 2
    n_models = sum(len(t.models) for t in cfg.tasks)
    from benchmark.config import resolve_path

    missing = [m.path for t in cfg.tasks for m in t.models if not resolve_path(m.path).exists()]
    print(f"ok: {cfg.name} ({len(cfg.tasks)} tasks, {n_models} models, config hash {cfg.hash()})")
    for p in missing:
        print(f"note: model path {p} is not a local folder; it will be tried as a hub id")
    return 0


def _cmd_ls(args) -> int:
    from benchmark import adapters  # noqa: F401
    from benchmark.config import REPO_ROOT, TaskConfig
    from benchmark.registry import ADAPTERS

    print("tasks:")
    for p in sorted((REPO_ROOT / "tasks").glob("*/*.yaml")):
        t = TaskConfig.load(p)
        print(f"  {t.name:<22} v{t.version}  {p.relative_to(REPO_ROOT)}  {t.description}")
    print("adapters:", ", ".join(ADAPTERS.names()))
    print("configs:", ", ".join(str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "configs").glob("*.yaml"))))
    if args.config:
        from benchmark.jobs import is_done
        from benchmark.runner import plan_jobs

        cfg = _load_config(args)
        jobs = plan_jobs(cfg)
        done = sum(is_done(cfg, j) for j in jobs)
        print(f"run {cfg.name}: {done}/{len(jobs)} jobs stored under {cfg.out_dir / 'store'}")
        for j in jobs:
            print(f"  [{'x' if is_done(cfg, j) else ' '}] {j.key}")
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
        p.add_argument("--output-dir", help="override output_dir")
        p.add_argument("--leaderboard-dir", help="override leaderboard_dir")
        return p

    p = with_config(sub.add_parser("run", help="run a config"))
    p.add_argument("--scheduler", help="inline | local | tcp://host:port | path to a scheduler file")
    p.add_argument("--workers", type=int, help="local cluster workers (default: cluster.workers)")
    p.add_argument("--no-report", action="store_true", help="skip the report step")
    p.set_defaults(func=_cmd_run)
    p = with_config(sub.add_parser("report", help="rebuild leaderboards from the store"))
    p.add_argument("--record-history", action="store_true", help="also append to history.csv (a run always does)")
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
    p.add_argument("--model", help="reference_unet model folder (default: a tiny random model)")
    p.add_argument("--vae", help="VAE folder for --model")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="write the table (markdown) here too")
    p.set_defaults(func=_cmd_perf)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
