"""The embedded-default world: which procedural dataset and conditions each task uses.

Shared by training and by the embedded-default task configs, so the two can
never disagree on data roots, sizes or condition channels.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from benchmark.procedural import GENERATORS

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_VERSION = 2  # bump when a generator changes its output


@dataclass(frozen=True)
class VAERecipe:
    """How a shared embedded VAE is trained; its folder is ``tasks/_shared/<name>``."""

    name: str
    latent_channels: int
    steps: int
    lr: float

    @property
    def folder(self) -> Path:
        return REPO_ROOT / "tasks" / "_shared" / self.name


VAES = {
    "vae": VAERecipe("vae", latent_channels=4, steps=1500, lr=5e-4),
}


@dataclass(frozen=True)
class EmbeddedTask:
    name: str
    generator: str
    conditions: tuple[tuple[str, str], ...]
    n_train: int = 2000
    n_test: int = 128
    seed: int = 0
    output_root: Path | None = None  # where models are exported; default: <repo>/tasks
    vae: str = "vae"  # key of VAES
    reference_size: int = 32  # reference encoder input (patch 4): (size / 4)^2 patch tokens
    train_levels: tuple[int, ...] = (1, 2, 3)  # CUFED5 reference levels seen in training (test: level 1)

    @property
    def models_dir(self) -> Path:
        return (self.output_root or REPO_ROOT / "tasks") / self.name / "models"

    @property
    def vae_recipe(self) -> VAERecipe:
        return VAES[self.vae]

    @property
    def vae_dir(self) -> Path:
        return self.vae_recipe.folder


EMBEDDED_TASKS = {
    "viton_hd": EmbeddedTask("viton_hd", "viton_hd", (("masked_image", "image"), ("mask", "mask"), ("pose", "image"))),
    "object_inpainting": EmbeddedTask("object_inpainting", "cocoee", (("masked_image", "image"), ("mask", "mask"))),
    "super_resolution": EmbeddedTask("super_resolution", "cufed5", (("lr_up", "image"),)),
}


def cache_dir() -> Path:
    """User cache for generated data and training state (``$I2AM_CACHE_DIR`` or ``<repo>/.cache``)."""
    return Path(os.environ.get("I2AM_CACHE_DIR", REPO_ROOT / ".cache"))


def ensure_data(generator: str, n_train: int = 2000, n_test: int = 128, seed: int = 0) -> Path:
    """Generate the procedural tree once (deterministic) and return its root."""
    root = cache_dir() / "data" / f"{generator}-v{DATA_VERSION}-s{seed}-{n_train}-{n_test}"
    marker = root / "COMPLETE.json"
    if not marker.is_file():
        GENERATORS[generator](root, n_train=n_train, n_test=n_test, seed=seed)
        marker.write_text(json.dumps({"generator": generator, "seed": seed, "n_train": n_train, "n_test": n_test}))
    return root
