"""Run and task configs: YAML parsed into frozen, typed objects, validated on load.

A bad key is an error that names the key, where it is, and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmark.api.spec import ModelSpec
from benchmark.defaults import DEFAULT_LAMBDA, DEFAULT_THRESHOLD, THRESHOLD_GRID
from benchmark.store import short_hash

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


def build_section(cls, data: dict | None, where: str, **nested):
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
        from benchmark.registry import DATASET_FORMATS

        if self.format not in DATASET_FORMATS:
            close = difflib.get_close_matches(str(self.format), DATASET_FORMATS.names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"dataset.format must be one of {DATASET_FORMATS.names()}, got {self.format!r}{hint}")


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
        where = str(path)
        data = _task_data(path)
        metrics = tuple(MetricSpec(**m) for m in data.pop("metrics", []))
        return build_section(cls, {**data, "metrics": metrics}, where, dataset=lambda d, w: build_section(DatasetConfig, d, w))


def _task_data(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The task YAML at ``path`` merged over its ``base:`` chain (a variant names the base task file it extends,
    relative to itself; the base may extend another): keys replace the base's, ``dataset`` merges key by key."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{chain[0]}: the base chain loops: {' -> '.join(map(str, chain + (path,)))}")
    if not path.is_file():
        raise ConfigError(f"{chain[-1] if chain else path}: base task config not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    base = data.pop("base", None)
    _check_keys(data, TaskConfig, str(path))
    if not base:
        return data
    parent = _task_data(path.parent / base, chain + (path,))
    parent.update({k: v for k, v in data.items() if k != "dataset"})
    parent["dataset"] = {**parent.get("dataset", {}), **data.get("dataset", {})}
    return parent


# --- run -------------------------------------------------------------------------------------
MAP_LEVELS = ("ulam", "tlam", "hlam", "llam", "sram")


@dataclass(frozen=True)
class CaptureConfig:
    levels: tuple = MAP_LEVELS
    time_groups: int = 5


@dataclass(frozen=True)
class ScoringConfig:
    """Report-time settings: changing any of them re-scores the stored maps, never regenerates."""

    threshold: float = DEFAULT_THRESHOLD
    lam: float = DEFAULT_LAMBDA
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
class OnePassConfig:
    """One-pass attribution (``docs/one_pass.md``): one conditional model call per timestep on the noised ground
    truth, captured like generation. ``baselines``: also for random-init copies."""

    timesteps: tuple = (250, 500, 750)
    baselines: bool = False

    def __post_init__(self):
        ts = tuple(self.timesteps)
        if not ts or len(set(ts)) != len(ts) or any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < 1000
                                                    for t in ts):
            raise ConfigError(f"one_pass.timesteps must be distinct integers in [0, 1000), got {list(ts)}")


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
    one_pass: OnePassConfig | None = None  # overrides the run's ``one_pass`` for this task entry


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
    one_pass: OnePassConfig | None = None  # None: generation-time attribution only
    scoring: ScoringConfig = ScoringConfig()
    cluster: ClusterConfig = ClusterConfig()
    metrics: MetricsConfig = MetricsConfig()
    leaderboard_dir: str | None = None  # default: <output dir>/leaderboards
    label: str = ""  # e.g. "tiny random model": shown in every output

    @property
    def out_dir(self) -> Path:
        return resolve_path(self.output_dir or f"runs/{self.name}")

    @property
    def leaderboard_path(self) -> Path:
        return resolve_path(self.leaderboard_dir) if self.leaderboard_dir else self.out_dir / "leaderboards"

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    def generation_key(self, task_run: "TaskRun", protocol: str = "generation") -> str:
        """What, besides task, samples and model, changes a job's stored outputs: the sampling override (or the
        one-pass timesteps), the capture settings, the seed and the generation code's version (``docs/store.md``)."""
        from benchmark.store import GENERATION_CODE_VERSION

        capture = dataclasses.asdict(self.capture)
        if protocol == "one_pass":
            capture.pop("time_groups")  # one time group per timestep
            how = {"one_pass": list(self.one_pass_of(task_run).timesteps)}
        else:
            how = {"sampling": {k: v for k, v in dataclasses.asdict(task_run.sampling).items() if v is not None}}
        return short_hash({"seed": self.seed, **how, "capture": capture, "code": GENERATION_CODE_VERSION})

    def one_pass_of(self, task_run: "TaskRun") -> OnePassConfig | None:
        return task_run.one_pass or self.one_pass

    def scoring_key(self) -> str:
        """The report-time settings that change leaderboard numbers (history compares like with like)."""
        s = self.scoring
        return short_hash({"threshold": s.threshold, "lambda": s.lam, "metrics": dataclasses.asdict(self.metrics)})

    def select(self, tasks: list[str] | None = None, models: list[str] | None = None, limit: int | None = None,
               device: str | None = None) -> "RunConfig":
        """This config narrowed from the command line: task names (or task paths), model names, the first
        ``limit`` samples of every task, the device. An unknown name is an error that names the known ones."""
        runs = []
        known_tasks = {tr.task: task_name(tr) for tr in self.tasks}
        for want in tasks or []:
            if want not in known_tasks and want not in known_tasks.values():
                close = difflib.get_close_matches(want, sorted(set(known_tasks.values())), n=1)
                raise ConfigError(f"--tasks: {want!r} is not in {self.name}"
                                  + (f"; did you mean {close[0]!r}?" if close else f"; tasks: {sorted(set(known_tasks.values()))}"))
        known_models = {m.name for tr in self.tasks for m in tr.models}
        for want in models or []:
            if want not in known_models:
                close = difflib.get_close_matches(want, sorted(known_models), n=1)
                raise ConfigError(f"--models: {want!r} is not in {self.name}"
                                  + (f"; did you mean {close[0]!r}?" if close else f"; models: {sorted(known_models)}"))
        for tr in self.tasks:
            if tasks and tr.task not in tasks and known_tasks[tr.task] not in tasks:
                continue
            ms = tuple(m for m in tr.models if not models or m.name in models)
            if ms:
                runs.append(dataclasses.replace(tr, models=ms, max_samples=limit if limit is not None else tr.max_samples))
        if not runs:
            raise ConfigError(f"{self.name}: nothing left to run after --tasks {tasks} --models {models}")
        return dataclasses.replace(self, tasks=tuple(runs), device=device or self.device)

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
                runs.append(build_section(TaskRun, item, wi, models=lambda ms, wm: tuple(_model(m, f"{wm}[{j}]") for j, m in enumerate(ms)),
                                   sampling=lambda d, ws: build_section(SamplingOverride, d, ws),
                                   one_pass=lambda d, wo: build_section(OnePassConfig, d, wo)))
            return tuple(runs)

        cfg = build_section(cls, data, where, tasks=task_run,
                     capture=lambda d, w: build_section(CaptureConfig, d, w),
                     one_pass=lambda d, w: build_section(OnePassConfig, d, w),
                     scoring=lambda d, w: build_section(ScoringConfig, d, w),
                     cluster=lambda d, w: build_section(ClusterConfig, d, w),
                     metrics=lambda d, w: build_section(MetricsConfig, d, w))
        validate(cfg, where)
        return cfg


def task_name(task_run: TaskRun) -> str:
    return TaskConfig.load(resolve_path(task_run.task)).name


def _model(m: dict, where: str) -> ModelSpec:
    _check_keys(m, ModelSpec, where)
    if "name" not in m or "adapter" not in m or "path" not in m:
        raise ConfigError(f"{where}: a model needs name, adapter and path")
    return ModelSpec(m["name"], m["adapter"], str(m["path"]), dict(m.get("options") or {}))


def resolve_path(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else REPO_ROOT / p


def validate(cfg: RunConfig, where: str) -> None:
    """Semantic checks: adapters exist, task files load, levels are known, numbers are sane (no model or dataset
    is opened: :func:`benchmark.tasks.check_run` checks those)."""
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
    off_grid = [t for t in (cfg.scoring.threshold, *cfg.scoring.sweep_thresholds)
                if not any(abs(t - g) < 1e-9 for g in THRESHOLD_GRID)]
    if off_grid:
        raise ConfigError(f"{where}.scoring: thresholds {off_grid} are not on the stored grid "
                          f"{list(THRESHOLD_GRID)} (multiples of 0.05 below 1)")
    for i, tr in enumerate(cfg.tasks):
        if tr.max_samples is not None and tr.max_samples < 1:
            raise ConfigError(f"{where}.tasks[{i}].max_samples must be >= 1, got {tr.max_samples}")
    for i, tr in enumerate(cfg.tasks):
        TaskConfig.load(resolve_path(tr.task))
        names = [m.name for m in tr.models]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}.tasks[{i}]: model names must be unique, got {names}")
        for m in tr.models:
            try:
                ADAPTERS.entry(m.adapter)
            except KeyError as err:
                raise ConfigError(f"{where}.tasks[{i}] model {m.name!r}: {err.args[0]}") from err
