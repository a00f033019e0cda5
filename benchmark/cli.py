"""``python -m benchmark``: run, ls, validate, train, perf, report."""

from __future__ import annotations

import argparse
import sys


def _cmd_train(args) -> int:
    from benchmark.training.train import TrainPlan, train_all

    plan = TrainPlan(**{k: v for k, v in {"steps": args.steps, "cls_steps": args.cls_steps,
                                            "vae_steps": args.vae_steps, "seed": args.seed}.items() if v is not None})
    train_all(plan, tasks=args.task)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="(re)train the embedded-default mini models; resumes from checkpoints")
    p.add_argument("--task", action="append", help="task name (repeatable); default: all")
    p.add_argument("--steps", type=int)
    p.add_argument("--cls-steps", type=int)
    p.add_argument("--vae-steps", type=int)
    p.add_argument("--seed", type=int)
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
