"""Turn a task config into its dataset; the only place where dataset paths are resolved."""

from __future__ import annotations

from benchmark.api.sample import DatasetError
from benchmark.api.sources import model_source_problem
from benchmark.config import REPO_ROOT, RunConfig, TaskConfig, resolve_path
from benchmark.registry import DATASET_FORMATS
from benchmark.training.embedded import EMBEDDED_TASKS


def _embedded(task: TaskConfig):
    return next(t for t in EMBEDDED_TASKS.values() if t.generator == task.dataset.format)


def dataset_root(task: TaskConfig):
    """The folder the task's dataset is read from (the embedded procedural tree is generated on first use)."""
    ds = task.dataset
    if ds.root == "embedded":
        return _embedded(task).data_root
    return resolve_path(ds.root)


def build_dataset(task: TaskConfig):
    """The task's dataset object (``ids``, ``len``, ``[i] -> I2ISample``).

    Raises :class:`~benchmark.api.sample.DatasetError` when the root or a folder of
    the layout is missing or holds no samples (the message names root, format and
    what was looked for)."""
    ds, root = task.dataset, dataset_root(task)
    entry = DATASET_FORMATS.entry(ds.format)
    if ds.root == "embedded" and entry.info.get("embedded_split_folder"):
        root = root / ds.split  # the procedural tree keeps each split in its own copy of the layout
    return DATASET_FORMATS.get(ds.format).from_config(root, ds)


def check_dataset(task: TaskConfig) -> tuple[int, str | None]:
    """For ``validate``: (number of samples, None), or (0, the problem) when the dataset cannot be used.

    Only the layout is checked (root, folders, the sample list), not every file:
    a bad sample is a per-sample error at run time. The embedded procedural
    tree is the harness's own, generated on first use; it is counted from its
    recipe rather than generated here."""
    if task.dataset.root == "embedded":
        recipe = _embedded(task)
        return (recipe.n_train if task.dataset.split == "train" else recipe.n_test), None
    try:
        n = len(build_dataset(task))
    except (DatasetError, FileNotFoundError, ValueError) as err:  # ValueError: a malformed pairs file, a bad level
        return 0, str(err)
    return (n, None) if n else (0, f"{task.dataset.format} dataset at {dataset_root(task)} holds no samples")


def check_run(cfg: RunConfig) -> list[str]:
    """What a run of ``cfg`` would miss, one line each (empty: ready): dataset roots that do not exist or hold no
    samples, model folders that are not local and hub ids that are not in the local cache, each with what was
    looked for and where to put it. Opens no model."""
    problems = []
    for tr in cfg.tasks:
        task = TaskConfig.load(resolve_path(tr.task))
        _, problem = check_dataset(task)
        if problem:
            problems.append(f"task {task.name} ({tr.task}): {problem}")
        for m in tr.models:
            sources = [(m.path, f"model {m.name!r} ({m.adapter})")]
            if isinstance(m.options.get("vae"), str):
                sources.append((m.options["vae"], f"model {m.name!r} option vae"))
            for path, what in sources:
                problem = model_source_problem(path, REPO_ROOT, what=what)
                if problem:
                    problems.append(f"task {task.name}, model {m.name}: {problem}")
    return problems
