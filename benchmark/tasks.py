"""Turn a task config into its dataset; the only place where dataset paths are resolved."""

from __future__ import annotations

from benchmark.api.sample import DatasetError
from benchmark.config import TaskConfig, resolve_path
from benchmark.datasets import CocoeeDataset, Cufed5Dataset, VitonHDDataset


def _embedded(task: TaskConfig):
    from benchmark.training.embedded import EMBEDDED_TASKS

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
    size = tuple(ds.size) if ds.size else None
    ref_size = tuple(ds.reference_size) if ds.reference_size else None
    if ds.format == "viton_hd":
        return VitonHDDataset(root, ds.split, ds.pairing, size=size, reference_size=ref_size)
    if ds.format == "cocoee":
        return CocoeeDataset(root / ds.split if ds.root == "embedded" else root, size=size, reference_size=ref_size)
    return Cufed5Dataset(root / ds.split if ds.root == "embedded" else root, level=ds.level, reference_size=ref_size)


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
