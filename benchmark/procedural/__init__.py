"""Procedural datasets written in the folder layouts of the real benchmarks.

Each generator is deterministic from its seed and writes a ``train`` and a
``test`` split whose sample ids never overlap, so the loaders in
:mod:`benchmark.datasets` read the procedural and the real data alike.
"""

from benchmark.procedural.cocoee import generate_cocoee
from benchmark.procedural.cufed5 import generate_cufed5
from benchmark.procedural.viton_hd import generate_viton_hd

GENERATORS = {
    "viton_hd": generate_viton_hd,
    "cocoee": generate_cocoee,
    "cufed5": generate_cufed5,
}

__all__ = ["GENERATORS", "generate_cocoee", "generate_cufed5", "generate_viton_hd"]
