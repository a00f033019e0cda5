"""Loaders for the real benchmark layouts (and the procedural trees written in them)."""

from benchmark.datasets.cocoee import CocoeeDataset
from benchmark.datasets.cufed5 import Cufed5Dataset
from benchmark.datasets.viton_hd import VitonHDDataset

DATASETS = {"viton_hd": VitonHDDataset, "cocoee": CocoeeDataset, "cufed5": Cufed5Dataset}

__all__ = ["DATASETS", "CocoeeDataset", "Cufed5Dataset", "VitonHDDataset"]
