"""Turn a task config into its dataset; the only place where dataset paths are resolved."""

from __future__ import annotations

from benchmark.config import TaskConfig, resolve_path
from benchmark.datasets import CocoeeDataset, Cufed5Dataset, VitonHDDataset


def dataset_root(task: TaskConfig):
    ds = task.dataset
    if ds.root == "embedded":
        from benchmark.training.embedded import EMBEDDED_TASKS

        return next(t for t in EMBEDDED_TASKS.values() if t.generator == ds.format).data_root
    return resolve_path(ds.root)


def build_dataset(task: TaskConfig):
    """The task's dataset object (``ids``, ``len``, ``[i] -> I2ISample``)."""
    ds, root = task.dataset, dataset_root(task)
    size = tuple(ds.size) if ds.size else None
    ref_size = tuple(ds.reference_size) if ds.reference_size else None
    if ds.format == "viton_hd":
        return VitonHDDataset(root, ds.split, ds.pairing, size=size, reference_size=ref_size)
    if ds.format == "cocoee":
        return CocoeeDataset(root / ds.split if ds.root == "embedded" else root, size=size, reference_size=ref_size)
    return Cufed5Dataset(root / ds.split if ds.root == "embedded" else root, level=ds.level, reference_size=ref_size)
