"""Run and task configs: YAML parsed into frozen, typed objects, validated on load.

A bad key is an error that names the key, where it is, and the closest valid key.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.machinery
import importlib.util
import json
import math
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmark.api.spec import ModelSpec
from benchmark.defaults import (DEFAULT_LAMBDA, DEFAULT_THRESHOLD, IMACS_SCORES, MAP_LEVELS, ONE_PASS_TIMESTEPS,
                                THRESHOLD_GRID, TIME_GROUPS, TRAINING_TIMESTEPS, one_pass_timesteps)
from benchmark.errors import UserError
from benchmark.registry import ADAPTERS, DATASET_FORMATS, SAMPLE_METRICS, SET_METRICS, metric_direction
from benchmark.store import GENERATION_CODE_VERSION, short_hash

REPO_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    pass


def _did_you_mean(name: str, known, list_known: bool = True) -> str:
    """"; did you mean 'x'?" for the closest of ``known``, else the known names (or nothing)."""
    close = difflib.get_close_matches(str(name), sorted(known), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {sorted(known)}" if list_known else ""


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
        if self.format not in DATASET_FORMATS:
            close = difflib.get_close_matches(str(self.format), DATASET_FORMATS.names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"dataset.format must be one of {DATASET_FORMATS.names()}, got {self.format!r}{hint}")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    direction: str | None = None  # "higher" | "lower": the registry's; a task that states it is checked against it


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
        metrics = tuple(_metric(m, f"{where}.metrics[{i}]") for i, m in enumerate(data.pop("metrics", [])))
        return build_section(cls, {**data, "metrics": metrics}, where, dataset=lambda d, w: build_section(DatasetConfig, d, w))


def _metric(data: dict, where: str) -> MetricSpec:
    """A task's metric entry, checked against the registry here so that a misspelt name or a wrong direction
    fails on load rather than when a job computes it."""
    spec = build_section(MetricSpec, data, where)
    known = set(SAMPLE_METRICS.names()) | set(SET_METRICS.names())
    if spec.name not in known:
        raise ConfigError(f"{where}: unknown metric {spec.name!r}{_did_you_mean(spec.name, known)}")
    registered = metric_direction(spec.name)
    if spec.direction is not None and spec.direction != registered:
        raise ConfigError(f"{where}: metric {spec.name!r} is registered with direction {registered!r}, "
                          f"got {spec.direction!r}")
    return dataclasses.replace(spec, direction=registered)


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
# The model option ``dtype`` (default float32): the precision the denoiser, reference encoder and VAE are loaded
# in; ``auto`` is float16 on CUDA and float32 elsewhere. The capture accumulates in float32 whatever it is.
MODEL_DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class CaptureConfig:
    levels: tuple = MAP_LEVELS
    time_groups: int = TIME_GROUPS


# The smallest change of a model mean worth an alert, in the metric's units (README "Regression alerts").
DEFAULT_MIN_EFFECT = {**{s: 0.05 for s in IMACS_SCORES}, "masked_psnr": 0.5, "psnr": 0.5, "masked_ssim": 0.01,
                      "ssim": 0.01, "lpips": 0.01}


@dataclass(frozen=True)
class RegressionConfig:
    """When a paired change since the last comparable run is flagged: its (1 - ``alpha``) bootstrap CI excludes 0
    and its size is at least ``min_effect[metric]`` (IMACS_g, IMACS_r and every quality metric)."""

    alpha: float = 0.05
    min_effect: dict = field(default_factory=lambda: dict(DEFAULT_MIN_EFFECT))


# benchmark.analysis.correlation.METHODS, named here so that reading a config does not import scipy.
SWEEP_METHODS = ("spearman", "pearson")


@dataclass(frozen=True)
class ScoringConfig:
    """Report-time settings: changing any of them re-scores the stored maps, never regenerates."""

    threshold: float = DEFAULT_THRESHOLD
    lam: float = DEFAULT_LAMBDA
    sweep_lambdas: tuple = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
    sweep_thresholds: tuple = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
    n_boot: int = 1000
    regression: RegressionConfig = RegressionConfig()
    sweep_method: str = "spearman"  # the lambda x threshold sweep's correlation: spearman | pearson

    @property
    def swept_lambdas(self) -> list[float]:
        """The sweep's lambdas: ``sweep_lambdas`` with the configured ``lambda``, so the default cell is on the grid."""
        return _with_cell(self.sweep_lambdas, self.lam)

    @property
    def swept_thresholds(self) -> list[float]:
        """The sweep's thresholds: ``sweep_thresholds`` with the configured ``threshold``."""
        return _with_cell(self.sweep_thresholds, self.threshold)


def _with_cell(values, value: float) -> list[float]:
    """``values`` and ``value``, sorted, without duplicates (values equal to 9 decimals count as one)."""
    return sorted({round(float(v), 9) for v in (*values, value)})


ScoringConfig._aliases = {"lambda": "lam"}


def _scoring(data: dict | None, where: str) -> ScoringConfig:
    """The ``scoring`` section; the removed ``regression_tolerance`` is an error that names what replaced it."""
    if isinstance(data, dict) and "regression_tolerance" in data:
        raise ConfigError(f"{where}: regression_tolerance was replaced by a paired test per sample, set by "
                          "scoring.regression: {alpha: 0.05, min_effect: {<metric>: <smallest change>, ...}} "
                          "(README 'Regression alerts')")
    return build_section(ScoringConfig, data, where, regression=_regression)


def _regression(data: dict | None, where: str) -> RegressionConfig:
    """The ``scoring.regression`` section; ``min_effect`` entries replace the defaults metric by metric."""
    section = build_section(RegressionConfig, data, where)
    alpha = section.alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"{where}.alpha: expected a number in (0, 1), got {alpha!r}")
    given = section.min_effect
    if not isinstance(given, dict):
        raise ConfigError(f"{where}.min_effect: expected a mapping metric -> smallest change, got {given!r}")
    known = set(DEFAULT_MIN_EFFECT) | {e.name for e in SAMPLE_METRICS.entries() if e.info.get("kind") == "quality"}
    for metric, value in given.items():
        if metric not in known:
            raise ConfigError(f"{where}.min_effect: {metric!r} is not IMACS or a quality metric"
                              f"{_did_you_mean(metric, known)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ConfigError(f"{where}.min_effect.{metric}: expected a finite number >= 0, got {value!r}")
    return dataclasses.replace(section, min_effect={**DEFAULT_MIN_EFFECT, **given})


@dataclass(frozen=True)
class SamplingOverride:
    num_inference_steps: int | None = None
    guidance_scale: float | None = None


@dataclass(frozen=True)
class OnePassConfig:
    """One-pass attribution (``docs/one_pass.md``): one conditional model call per timestep on the noised ground
    truth, captured like generation. ``baselines``: also for random-init copies (:func:`is_baseline`)."""

    timesteps: tuple = ONE_PASS_TIMESTEPS
    baselines: bool = False

    def __post_init__(self):
        try:
            one_pass_timesteps(self.timesteps, upper=TRAINING_TIMESTEPS)
        except ValueError as err:
            raise ConfigError(f"one_pass.timesteps: {err}") from err

    def covers(self, model: ModelSpec) -> bool:
        """Whether ``model`` gets a one-pass job: every model under test; a baseline only with ``baselines``."""
        return self.baselines or not is_baseline(model)


def is_baseline(model: ModelSpec) -> bool:
    """A random-init copy (option ``random_init``): a method baseline, not a model under test; the leaderboards
    list it apart and leave it out of comparisons between models."""
    return "random_init" in model.options


@dataclass(frozen=True)
class ClusterConfig:
    workers: int = 1
    scheduler: str | None = None  # tcp://host:port or a scheduler-file path
    threads_per_worker: int = 1
    retries: int = 1
    job_timeout_s: float = 3600.0
    # A batch-scheduler cluster (benchmark.run.jobqueue; README "A nightly on a SLURM cluster"): ``jobqueue`` names the
    # scheduler, the keys after it describe ONE batch job; the cluster runs 0 to ``workers`` worker processes.
    jobqueue: str | None = None  # slurm | pbs | sge | lsf | local (the same job scripts, run as local processes)
    cores: int = 1  # per batch job
    memory: str | None = None  # per batch job, e.g. 64GB (required with jobqueue)
    processes: int = 1  # worker processes per batch job, each with cores / processes threads (1 with GPUs)
    walltime: str | None = None  # [D-]HH:MM:SS (SLURM), HH:MM:SS (PBS, SGE, local), HH:MM (LSF)
    queue: str | None = None  # partition (SLURM) or queue
    account: str | None = None  # account (SLURM, PBS) or project (SGE, LSF)
    interface: str | None = None  # network interface of the scheduler and workers, e.g. ib0
    job_extra_directives: tuple = ()  # e.g. ["--gres=gpu:1"]
    job_script_prologue: tuple = ()  # shell lines before the worker starts, e.g. ["module load cuda"]
    worker_extra_args: tuple = ()  # more `dask worker` options
    log_directory: str | None = None  # default: <output dir>/jobqueue-logs
    # auto: jobs ask for the GPU resource when the cluster's workers offer it; none: never (a local cluster is CPU
    # workers); required: a cluster whose workers offer no GPU is an error before anything is submitted
    gpus: str = "auto"
    # Dask's per-worker host-memory limit ("32GiB", "auto" = host RAM / workers, "none"); unset: "auto" on a CPU
    # cluster, none on a GPU cluster (weights pass through host RAM while they load)
    memory_limit: str | None = None

    def __post_init__(self):
        if self.gpus not in CLUSTER_GPUS:
            raise ConfigError(f"cluster.gpus: expected one of {list(CLUSTER_GPUS)}, got {self.gpus!r}"
                              f"{_did_you_mean(str(self.gpus), CLUSTER_GPUS, list_known=False)}")
        if self.memory_limit is not None and not isinstance(self.memory_limit, (str, int)):
            raise ConfigError(f"cluster.memory_limit: expected a size such as 32GiB, auto or none, "
                              f"got {self.memory_limit!r}")


CLUSTER_GPUS = ("auto", "none", "required")


# cluster.jobqueue: the batch schedulers benchmark.run.jobqueue starts workers through, and ``local`` -> the
# dask-jobqueue cluster class of each.
CLUSTER_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
                   "local": "local.LocalCluster"}
JOBQUEUES = tuple(CLUSTER_CLASSES)
JOBQUEUE_KEYS = ("cores", "memory", "processes", "walltime", "queue", "account", "interface", "job_extra_directives",
                 "job_script_prologue", "worker_extra_args", "log_directory")


def cluster_class(jobqueue: str):
    """The dask-jobqueue cluster class of ``jobqueue`` (a name of :data:`JOBQUEUES`)."""
    import dask_jobqueue
    import dask_jobqueue.local

    owner, _, name = CLUSTER_CLASSES[jobqueue].rpartition(".")
    return getattr(dask_jobqueue.local if owner else dask_jobqueue, name)


def check_submit_command(jobqueue: str) -> None:
    """UserError unless the command that submits ``jobqueue``'s batch jobs (sbatch, qsub, bsub) is on the PATH."""
    command = cluster_class(jobqueue).job_cls.submit_command
    if command and not shutil.which(command.split()[0]):
        raise UserError(f"cluster.jobqueue {jobqueue}: {command.split()[0]!r} is not on this machine's PATH; run from "
                        f"a node that submits {jobqueue} jobs, or remove cluster.jobqueue")


def walltime_seconds(walltime: str, jobqueue: str) -> int:
    """Seconds in ``walltime`` written as ``jobqueue``'s directive takes it: ``HH:MM`` for LSF, ``[D-]HH:MM:SS`` for
    SLURM, ``HH:MM:SS`` for the others. ValueError, naming the expected form, for anything else or zero."""
    form = {"lsf": "HH:MM", "slurm": "[D-]HH:MM:SS"}.get(jobqueue, "HH:MM:SS")
    pattern = {"lsf": r"()(\d+):([0-5]\d)()", "slurm": r"(?:(\d+)-)?(\d+):([0-5]\d):([0-5]\d)"}.get(
        jobqueue, r"()(\d+):([0-5]\d):([0-5]\d)")
    hit = re.fullmatch(pattern, walltime) if isinstance(walltime, str) else None
    seconds = (((int(hit[1] or 0) * 24 + int(hit[2])) * 60 + int(hit[3])) * 60 + int(hit[4] or 0)) if hit else 0
    if not seconds:
        raise ValueError(f"expected a time {form} above zero for {jobqueue}, got {walltime!r}")
    return seconds


def _check_jobqueue(c: ClusterConfig, where: str) -> None:
    """The batch-job keys of ``cluster``: set only with ``jobqueue``, which names a known scheduler, and well formed."""
    if c.jobqueue is None:
        stray = [k for k in JOBQUEUE_KEYS if getattr(c, k) != ClusterConfig.__dataclass_fields__[k].default]
        if stray:
            raise ConfigError(f"{where}.{stray[0]}: describes a batch job, used only with cluster.jobqueue "
                              f"({' | '.join(JOBQUEUES)})")
        return
    if c.jobqueue not in JOBQUEUES:
        raise ConfigError(f"{where}.jobqueue: expected one of {list(JOBQUEUES)}, got {c.jobqueue!r}"
                          f"{_did_you_mean(str(c.jobqueue), JOBQUEUES, list_known=False)}")
    if c.scheduler:
        raise ConfigError(f"{where}: jobqueue starts its own scheduler; set jobqueue or scheduler, not both")
    if c.threads_per_worker != ClusterConfig.threads_per_worker:
        raise ConfigError(f"{where}.threads_per_worker: a batch job's workers have cores / processes threads each; "
                          "set cores and processes")
    for key in ("cores", "processes"):
        value = getattr(c, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}.{key}: expected an integer >= 1, got {value!r}")
    if c.processes > c.cores:
        raise ConfigError(f"{where}.processes: {c.processes} worker processes need at least as many cores, "
                          f"got cores: {c.cores}")
    from dask.utils import parse_bytes

    try:
        memory = parse_bytes(c.memory) if isinstance(c.memory, str) else 0
    except ValueError:
        memory = 0
    if memory <= 0:
        raise ConfigError(f"{where}.memory: expected the memory of one batch job, such as 64GB, got {c.memory!r}")
    if c.walltime is not None:
        try:
            walltime_seconds(c.walltime, c.jobqueue)
        except ValueError as err:
            raise ConfigError(f"{where}.walltime: {err}") from err
    for key in ("queue", "account", "interface", "log_directory"):
        value = getattr(c, key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    for key in ("job_extra_directives", "job_script_prologue", "worker_extra_args"):
        value = getattr(c, key)
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}.{key}: expected a list of strings, got {value!r}")
    if c.jobqueue == "local" and c.job_script_prologue:
        raise ConfigError(f"{where}.job_script_prologue: the local job class runs the worker command alone; "
                          "use a batch scheduler for a prologue")


@dataclass(frozen=True)
class MetricsConfig:
    weights_dir: str | None = None
    kid_scale: float = 1000.0


# ``store.maps_dtype`` (benchmark.results.sample_maps.MAPS_DTYPES, named here so that reading a config does not
# import torch) and the ``store.images`` policies.
STORE_MAPS_DTYPES = ("float16", "float32")
STORE_IMAGES = ("all", "none")


@dataclass(frozen=True)
class StoreConfig:
    """What a job keeps besides its record (``docs/store.md``). ``maps_dtype``: the precision of the stored maps
    (float16: min-max normalised per map, within 2**-12 of each map's range; scores never change, they are
    computed from the float32 maps before saving). ``images``: ``"all"`` (the PNGs of every sample), ``"none"``
    (no generated/reference/overlay PNG), or ``{"first": N}`` (only for the first N samples of each job)."""

    maps_dtype: str = "float16"
    images: object = "all"

    @property
    def images_first(self) -> int | None:
        """How many samples per job keep their PNGs; None: all of them."""
        if self.images == "all":
            return None
        return 0 if self.images == "none" else self.images["first"]


def _store(data: dict | None, where: str) -> StoreConfig:
    """The ``store`` section: ``{maps_dtype: float16 | float32, images: all | none | {first: N}}``."""
    section = build_section(StoreConfig, data, where)
    if section.maps_dtype not in STORE_MAPS_DTYPES:
        raise ConfigError(f"{where}.maps_dtype: expected one of {list(STORE_MAPS_DTYPES)}, got {section.maps_dtype!r}"
                          f"{_did_you_mean(str(section.maps_dtype), STORE_MAPS_DTYPES, list_known=False)}")
    images = section.images
    if isinstance(images, dict):
        if set(images) != {"first"}:
            bad = sorted(set(images) - {"first"}) or ["(none)"]
            raise ConfigError(f"{where}.images: expected {{first: N}}, got key {bad[0]!r}"
                              f"{_did_you_mean(str(bad[0]), ['first'], list_known=False)}")
        n = images["first"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{where}.images.first: expected an integer >= 0, got {n!r}")
        return dataclasses.replace(section, images={"first": n})
    if images not in STORE_IMAGES:
        raise ConfigError(f"{where}.images: expected all, none or {{first: N}}, got {images!r}"
                          f"{_did_you_mean(str(images), STORE_IMAGES, list_known=False)}")
    return section


@dataclass(frozen=True)
class TaskRun:
    task: str  # path to a task folder or yaml (a registered task name is resolved to its path on load)
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
    store: StoreConfig = StoreConfig()
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

    def generation_key(self, task_run: "TaskRun", protocol: str = "generation", device_type: str = "cpu") -> str:
        """What, besides task, samples and model, changes a job's stored outputs: the sampling override (or the
        one-pass timesteps), the capture settings, the seed, the stored maps' precision when it is not float32
        (``store.maps_dtype``), the device type the jobs run on (cpu | cuda | mps: kernels differ, so do the
        numbers) and the generation code's version (``docs/store.md``). ``store.images`` is not in it:
        the PNGs are views of the outputs, no score reads them."""
        capture = dataclasses.asdict(self.capture)
        if protocol == "one_pass":
            capture.pop("time_groups")  # one time group per timestep
            how = {"one_pass": list(self.one_pass_of(task_run).timesteps)}
        else:
            how = {"sampling": {k: v for k, v in dataclasses.asdict(task_run.sampling).items() if v is not None}}
        # float32 maps are what every earlier store holds: their keys stay as they were (docs/store.md)
        maps = {} if self.store.maps_dtype == "float32" else {"maps_dtype": self.store.maps_dtype}
        device = {} if device_type == "cpu" else {"device": device_type}  # likewise for the CPU stores
        return short_hash({"seed": self.seed, **how, "capture": capture, **maps, **device,
                           "code": GENERATION_CODE_VERSION})

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
        if device:
            _parse_device(device, "--device")
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
                runs.append(build_section(TaskRun, item, wi, task=_task_path,
                                          models=lambda ms, wm: tuple(_model(m, f"{wm}[{j}]") for j, m in enumerate(ms)),
                                          sampling=lambda d, ws: build_section(SamplingOverride, d, ws),
                                          one_pass=lambda d, wo: build_section(OnePassConfig, d, wo)))
            return tuple(runs)

        cfg = build_section(cls, data, where, tasks=task_run,
                     capture=lambda d, w: build_section(CaptureConfig, d, w),
                     one_pass=lambda d, w: build_section(OnePassConfig, d, w),
                     scoring=_scoring,
                     cluster=lambda d, w: build_section(ClusterConfig, d, w),
                     metrics=lambda d, w: build_section(MetricsConfig, d, w),
                     store=_store)
        validate(cfg, where)
        return cfg


def task_name(task_run: TaskRun) -> str:
    return TaskConfig.load(resolve_path(task_run.task)).name


def registered_tasks() -> dict[str, str]:
    """Registered task name -> its path as a run config writes it (``tasks/<dir>`` for a ``task.yaml``, else the
    variant file), for every task file under ``REPO_ROOT/tasks`` (the tasks ``ls`` lists)."""
    found: dict[str, str] = {}
    for p in sorted((REPO_ROOT / "tasks").glob("*/*.yaml")):
        name = TaskConfig.load(p).name
        rel = (p.parent if p.name == "task.yaml" else p).relative_to(REPO_ROOT).as_posix()
        if name in found:
            raise ConfigError(f"task name {name!r} is defined twice: {found[name]} and {rel}")
        found[name] = rel
    return found


def _task_path(task: str, where: str) -> str:
    """``task`` as given when it names an existing path, else the path of the registered task of that name, so
    that job keys and the report see one value whichever way the config names a task."""
    if not isinstance(task, str):
        raise ConfigError(f"{where}: expected a task name or path, got {task!r}")
    if resolve_path(task).exists() or "/" in task or task.endswith((".yaml", ".yml")):
        return task  # a path: a missing one is reported with what was looked for by validate()
    known = registered_tasks()
    if task not in known:
        raise ConfigError(f"{where}: {task!r} is neither a task file nor a registered task name"
                          f"{_did_you_mean(task, known)}")
    return known[task]


def _model(m: dict, where: str) -> ModelSpec:
    _check_keys(m, ModelSpec, where)
    if "name" not in m or "adapter" not in m or "path" not in m:
        raise ConfigError(f"{where}: a model needs name, adapter and path")
    options = dict(m.get("options") or {})
    check_model_dtype(options.get("dtype", "float32"), f"{where} model {m['name']!r}")
    return ModelSpec(m["name"], m["adapter"], str(m["path"]), options)


def check_model_dtype(dtype, where: str) -> None:
    """Raise ConfigError unless ``dtype`` (the model option) is one of :data:`MODEL_DTYPES`."""
    if dtype not in MODEL_DTYPES:
        raise ConfigError(f"{where}: option dtype {dtype!r} is not one of {list(MODEL_DTYPES)}"
                          f"{_did_you_mean(str(dtype), MODEL_DTYPES, list_known=False)}")


def resolve_path(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else REPO_ROOT / p


def validate(cfg: RunConfig, where: str) -> None:
    """Semantic checks: adapters exist, task files load, levels are known, numbers are sane, the device is
    well-formed (no model or dataset is opened: :func:`benchmark.run.tasks.check_run` checks those; nor is torch
    imported: :func:`check_config` looks beyond the file)."""
    if not cfg.tasks:
        raise ConfigError(f"{where}: no tasks")
    bad = set(cfg.capture.levels) - set(MAP_LEVELS)
    if bad:
        raise ConfigError(f"{where}.capture.levels: unknown {sorted(bad)}; choose from {MAP_LEVELS}")
    if cfg.batch_size < 1 or cfg.shard_size < 1 or cfg.cluster.workers < 1:
        raise ConfigError(f"{where}: batch_size, shard_size and cluster.workers must be >= 1")
    _parse_device(cfg.device, f"{where}.device")
    _check_scoring(cfg.scoring, f"{where}.scoring")
    _check_jobqueue(cfg.cluster, f"{where}.cluster")
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


def _check_scoring(s: ScoringConfig, where: str) -> None:
    """Lambdas are numbers >= 0; thresholds are on the stored grid (any such cell rescores from the store)."""
    for key, values in (("lambda", (s.lam,)), ("sweep_lambdas", s.sweep_lambdas),
                        ("threshold", (s.threshold,)), ("sweep_thresholds", s.sweep_thresholds)):
        if not isinstance(values, tuple):
            raise ConfigError(f"{where}.{key}: expected a list of numbers, got {values!r}")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise ConfigError(f"{where}.{key}: expected finite numbers, got {bad}")
    negative = [v for v in (s.lam, *s.sweep_lambdas) if v < 0]
    if negative:
        raise ConfigError(f"{where}: lambdas must be >= 0, got {negative}")
    off_grid = [t for t in (s.threshold, *s.sweep_thresholds) if not any(abs(t - g) < 1e-9 for g in THRESHOLD_GRID)]
    if off_grid:
        raise ConfigError(f"{where}: thresholds {off_grid} are not on the stored grid "
                          f"{list(THRESHOLD_GRID)} (multiples of 0.05 below 1)")
    if s.sweep_method not in SWEEP_METHODS:
        raise ConfigError(f"{where}.sweep_method: expected one of {list(SWEEP_METHODS)}, got {s.sweep_method!r}"
                          f"{_did_you_mean(str(s.sweep_method), SWEEP_METHODS, list_known=False)}")


# --- pre-run checks (beyond the file) ----------------------------------------------------------------
_DEVICE = re.compile(r"(auto|cpu|cuda|mps)(?::(\d+))?")


def _parse_device(device: str, where: str) -> tuple[str, int]:
    """(kind, index) of a device string (index 0 when none is given); a malformed one is a ConfigError."""
    hit = _DEVICE.fullmatch(device) if isinstance(device, str) else None
    if not hit or (hit[1] in ("auto", "cpu") and hit[2] is not None):
        hint = _did_you_mean(str(device), ["auto", "cpu", "cuda", "mps"], list_known=False)
        raise ConfigError(f"{where}: {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps{hint}")
    return hit[1], int(hit[2] or 0)


def check_device(device: str) -> None:
    """Raise ConfigError unless ``device`` exists on this machine. ``auto`` and ``cpu`` always do and import
    nothing; ``cuda[:N]`` and ``mps`` import torch to ask it."""
    kind, index = _parse_device(device, "device")
    if kind in ("auto", "cpu"):
        return
    import torch

    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        label = "CUDA GPU"
    else:
        count = int(torch.backends.mps.is_available())
        label = "MPS device"
    if index >= count:
        have = f"{count} {label}{'s' if count != 1 else ''}" + (f" ({kind}:0..{kind}:{count - 1})" if count else "")
        raise ConfigError(f"device {device!r}: this machine has {have}; use device: cpu or auto")


def check_target(target, where: str) -> None:
    """Raise ConfigError unless a registry target ``"module:attribute"`` names a module that defines the attribute
    at top level, read from its source so that neither the module nor its packages (and torch or diffusers behind
    them) are imported; a module already imported is asked directly. A target that is already an object passes."""
    if not isinstance(target, str):
        return
    module, _, attr = target.partition(":")
    if module in sys.modules:
        names = set(dir(sys.modules[module]))
    else:
        spec = _find_spec(module)
        if spec is None:
            raise ConfigError(f"{where}: target {target!r}: no module {module!r}")
        if not spec.origin or not spec.origin.endswith(".py"):
            return  # a built-in or compiled module: its names are known only by importing it
        names = _top_level_names(ast.parse(Path(spec.origin).read_text(), spec.origin).body)
        if "__getattr__" in names or "*" in names:
            return  # names made on first access or by a star import
    if attr not in names:
        hint = _did_you_mean(attr, names, list_known=False)
        raise ConfigError(f"{where}: target {target!r}: {module} defines no {attr!r}{hint}")


def _find_spec(module: str):
    """The module's spec (None when there is none), found package by package on the file system:
    :func:`importlib.util.find_spec` would import the parent packages."""
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    for i in range(1, len(parts)):
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), spec.submodule_search_locations)
    return spec


def _top_level_names(body: list) -> set[str]:
    """Names a module body binds: classes, functions, assignments and imports, also inside top-level
    ``if``/``try``/``with`` blocks (``"*"`` for a star import)."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            for block in blocks:
                names |= _top_level_names(block)
    return names


def check_config(cfg: RunConfig, scheduler: str | None = None) -> None:
    """The pre-run checks loading leaves out because they look beyond the file: every configured adapter's
    registry target is defined, the scheduler is a known kind, and the device exists on this machine. The device
    is not checked when the jobs run on an existing cluster's workers (``scheduler``, as given to
    ``run --scheduler``, or ``cluster.scheduler``, an address or a scheduler file) or on batch jobs
    (``cluster.jobqueue``: its submit command must be on this machine's PATH instead).
    Raises ConfigError on the first problem."""
    for i, tr in enumerate(cfg.tasks):
        for m in tr.models:
            check_target(ADAPTERS.entry(m.adapter).target,
                         f"{cfg.name}.tasks[{i}] model {m.name!r} (adapter {m.adapter!r})")
    where = scheduler or cfg.cluster.scheduler
    if where in (None, "local") and cfg.cluster.jobqueue not in (None, "local"):  # the jobs run on batch nodes
        check_submit_command(cfg.cluster.jobqueue)
    elif where in (None, "inline", "local"):  # the jobs run on this machine
        check_device(cfg.device)
    elif not where.startswith(("tcp://", "tls://", "ucx://")) and not Path(where).is_file():
        raise ConfigError(f"scheduler {where!r}: not inline, local, an address (tcp://host:port) or an existing "
                          f"scheduler file ({'--scheduler' if scheduler else f'{cfg.name}.cluster.scheduler'})")
