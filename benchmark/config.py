"""Run and task configs: YAML parsed into frozen, typed objects, validated on load.

A bad key is an error that names the key, where it is, and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmark.api.model import ModelSpec

REPO_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    pass


def _check_keys(data: dict, cls, where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    valid = {f.name for f in dataclasses.fields(cls)}
    aliases = getattr(cls, "_aliases", {})
    for key in data:
        if key not in valid and key not in aliases:
            close = difflib.get_close_matches(str(key), sorted(valid | set(aliases)), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {sorted(valid)}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")


def _build(cls, data: dict | None, where: str, **nested):
    data = dict(data or {})
    _check_keys(data, cls, where)
    for alias, name in getattr(cls, "_aliases", {}).items():
        if alias in data:
            data[name] = data.pop(alias)
    for name, builder in nested.items():
        if name in data:
            data[name] = builder(data[name], f"{where}.{name}")
    for f in dataclasses.fields(cls):
        if f.name in data and isinstance(data[f.name], list) and f.type.startswith("tuple"):
            data[f.name] = tuple(tuple(x) if isinstance(x, list) else x for x in data[f.name])
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err


# --- task ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetConfig:
    format: str
    root: str = "embedded"  # "embedded" = the procedural tree of the embedded default
    split: str = "test"
    pairing: str = "paired"  # VITON-HD
    level: int = 1  # CUFED5 reference similarity level
    size: tuple[int, ...] | None = None  # (H, W) evaluation size; None = native
    reference_size: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.format not in ("viton_hd", "cocoee", "cufed5"):
            raise ConfigError(f"dataset.format must be viton_hd, cocoee or cufed5, got {self.format!r}")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    direction: str  # "higher" | "lower"


@dataclass(frozen=True)
class TaskConfig:
    """A task: dataset, masks and metrics; ``version`` is bumped whenever scoring changes."""

    name: str
    version: int
    dataset: DatasetConfig
    description: str = ""
    metrics: tuple = ()
    region: str = ""  # what x_g means for this task
    reference_region: str = ""  # what x_r means

    @classmethod
    def load(cls, path: str | Path) -> "TaskConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "task.yaml"
        if not path.is_file():
            raise ConfigError(f"task config not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        where = str(path)
        base = data.pop("base", None)  # a variant names the base task file it extends
        _check_keys(data, cls, where)
        if base:
            parent = yaml.safe_load((path.parent / base).read_text())
            parent.update({k: v for k, v in data.items() if k != "dataset"})
            parent["dataset"] = {**parent.get("dataset", {}), **data.get("dataset", {})}
            data = parent
        metrics = tuple(MetricSpec(**m) for m in data.pop("metrics", []))
        return _build(cls, {**data, "metrics": metrics}, where, dataset=lambda d, w: _build(DatasetConfig, d, w))


# --- run -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptureConfig:
    levels: tuple = ("ulam", "tlam", "hlam", "llam", "sram")
    time_groups: int = 5


@dataclass(frozen=True)
class ScoringConfig:
    threshold: float = 0.4
    lam: float = 3.0
    sweep_lambdas: tuple = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
    sweep_thresholds: tuple = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
    n_boot: int = 1000
    regression_tolerance: float = 0.05


ScoringConfig._aliases = {"lambda": "lam"}


@dataclass(frozen=True)
class SamplingOverride:
    num_inference_steps: int | None = None
    guidance_scale: float | None = None


@dataclass(frozen=True)
class ClusterConfig:
    workers: int = 1
    scheduler: str | None = None  # tcp://host:port or a scheduler-file path
    threads_per_worker: int = 1
    retries: int = 1
    job_timeout_s: float = 3600.0
    gpus: str = "auto"  # auto | none


@dataclass(frozen=True)
class MetricsConfig:
    weights_dir: str | None = None
    kid_scale: float = 1000.0


@dataclass(frozen=True)
class TaskRun:
    task: str  # path to a task folder or yaml
    models: tuple = ()
    max_samples: int | None = None
    sampling: SamplingOverride = SamplingOverride()


@dataclass(frozen=True)
class RunConfig:
    name: str
    tasks: tuple = ()
    output_dir: str | None = None
    seed: int = 0
    device: str = "auto"
    batch_size: int = 16
    shard_size: int = 32
    capture: CaptureConfig = CaptureConfig()
    scoring: ScoringConfig = ScoringConfig()
    cluster: ClusterConfig = ClusterConfig()
    metrics: MetricsConfig = MetricsConfig()
    leaderboard_dir: str = "leaderboards"
    label: str = ""  # e.g. "tiny random model": shown in every output

    @property
    def out_dir(self) -> Path:
        return resolve_path(self.output_dir or f"runs/{self.name}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    def hash(self) -> str:
        """Hash of everything that changes numbers (not cluster layout or output places)."""
        d = self.to_dict()
        for k in ("cluster", "output_dir", "leaderboard_dir", "label", "batch_size", "shard_size"):
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def load(cls, path: str | Path, overrides: dict | None = None) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"run config not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        data.update(overrides or {})
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "RunConfig":
        def task_run(items, w):
            if not isinstance(items, list) or not items:
                raise ConfigError(f"{w}: expected a non-empty list of tasks")
            runs = []
            for i, item in enumerate(items):
                wi = f"{w}[{i}]"
                runs.append(_build(TaskRun, item, wi, models=lambda ms, wm: tuple(_model(m, f"{wm}[{j}]") for j, m in enumerate(ms)),
                                   sampling=lambda d, ws: _build(SamplingOverride, d, ws)))
            return tuple(runs)

        cfg = _build(cls, data, where, tasks=task_run,
                     capture=lambda d, w: _build(CaptureConfig, d, w),
                     scoring=lambda d, w: _build(ScoringConfig, d, w),
                     cluster=lambda d, w: _build(ClusterConfig, d, w),
                     metrics=lambda d, w: _build(MetricsConfig, d, w))
        validate(cfg, where)
        return cfg


def _model(m: dict, where: str) -> ModelSpec:
    _check_keys(m, ModelSpec, where)
    if "name" not in m or "adapter" not in m or "path" not in m:
        raise ConfigError(f"{where}: a model needs name, adapter and path")
    return ModelSpec(m["name"], m["adapter"], str(m["path"]), dict(m.get("options") or {}))


def resolve_path(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else REPO_ROOT / p


def validate(cfg: RunConfig, where: str) -> None:
    """Semantic checks: adapters exist, task files load, levels are known, numbers are sane."""
    from benchmark import adapters  # noqa: F401  (registers adapters)
    from benchmark.capture.accumulator import MAP_LEVELS
    from benchmark.registry import ADAPTERS

    if not cfg.tasks:
        raise ConfigError(f"{where}: no tasks")
    bad = set(cfg.capture.levels) - set(MAP_LEVELS)
    if bad:
        raise ConfigError(f"{where}.capture.levels: unknown {sorted(bad)}; choose from {MAP_LEVELS}")
    if cfg.batch_size < 1 or cfg.shard_size < 1 or cfg.cluster.workers < 1:
        raise ConfigError(f"{where}: batch_size, shard_size and cluster.workers must be >= 1")
    if not 0 <= cfg.scoring.threshold < 1:
        raise ConfigError(f"{where}.scoring.threshold must be in [0, 1)")
    for i, tr in enumerate(cfg.tasks):
        TaskConfig.load(resolve_path(tr.task))
        names = [m.name for m in tr.models]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}.tasks[{i}]: model names must be unique, got {names}")
        for m in tr.models:
            try:
                ADAPTERS.get(m.adapter)
            except KeyError as err:
                raise ConfigError(f"{where}.tasks[{i}] model {m.name!r}: {err.args[0]}") from err
