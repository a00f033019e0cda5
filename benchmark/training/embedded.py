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
class EmbeddedTask:
    name: str
    generator: str
    conditions: tuple[tuple[str, str], ...]
    n_train: int = 2000
    n_test: int = 128
    seed: int = 0
    output_root: Path | None = None  # where models are exported; default: <repo>/tasks
    steps: int = 3000  # training steps of the patch-token (full) run
    vae: str = "vae"  # key of VAES
    reference_size: int = 32  # reference encoder input (patch 4): (size / 4)^2 patch tokens
    train_levels: tuple[int, ...] = (1, 2, 3)  # CUFED5 reference levels seen in training (test: level 1)
    generator_options: tuple[tuple[str, object], ...] = ()  # keyword arguments of the generator
    attention_at_full_resolution: bool = True  # UNet attention on the full latent grid too (see build_unet)
    residual_of: str | None = None  # generate the latent residual over this image condition (I2IModelSpec)

    @property
    def data_root(self) -> Path:
        return ensure_data(self.generator, self.n_train, self.n_test, self.seed, **dict(self.generator_options))

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
    "object_inpainting": EmbeddedTask("object_inpainting", "cocoee", (("masked_image", "image"), ("mask", "mask")),
                                      steps=12000),
    "super_resolution": EmbeddedTask("super_resolution", "cufed5", (("lr_up", "image"),), vae="vae_sr", steps=6000,
                                     reference_size=48, train_levels=(1, 2), attention_at_full_resolution=False,
                                     residual_of="lr_up",
                                     generator_options=(("texture_scale", 2),)),
}
# The CUFED5 variant with the finest textures (texture_scale 1): part of the shared VAE's training images.
CUFED5_FINE = EmbeddedTask("cufed5_fine", "cufed5", (("lr_up", "image"),))


VAE_OBJECTIVES = {"l1-sample": "posterior sample decoded, L1", "l1l2-mode": "posterior mode decoded, L1 + L2"}


@dataclass(frozen=True)
class VAERecipe:
    """How an embedded VAE is trained; its folder is ``tasks/_shared/<name>``.

    ``objective``: ``l1-sample`` decodes a posterior sample under an L1 loss; ``l1l2-mode`` decodes the
    posterior mode under L1 + L2 (sharper, for detail the task must keep). Both add a 1e-6 KL term.
    """

    name: str
    latent_channels: int
    steps: int
    lr: float
    data: tuple[EmbeddedTask, ...]  # whose train images (targets, references, image conditions) it learns
    objective: str = "l1-sample"
    downsample: int = 4

    def __post_init__(self):
        if self.objective not in VAE_OBJECTIVES:
            raise ValueError(f"VAE recipe {self.name!r}: objective must be one of {sorted(VAE_OBJECTIVES)}, "
                             f"got {self.objective!r}")

    @property
    def folder(self) -> Path:
        return REPO_ROOT / "tasks" / "_shared" / self.name

    def describe(self) -> str:
        names = ", ".join(t.name for t in self.data)
        decoded = VAE_OBJECTIVES[self.objective]
        return (f"f={self.downsample}, {self.latent_channels} latent channels, trained on the train images of "
                f"{names}: {self.steps} steps at batch 16, lr {self.lr:g}, {decoded} + 1e-6 KL")


VAES = {
    "vae": VAERecipe("vae", latent_channels=4, steps=1500, lr=5e-4,
                     data=(EMBEDDED_TASKS["viton_hd"], EMBEDDED_TASKS["object_inpainting"], CUFED5_FINE)),
    "vae_sr": VAERecipe("vae_sr", latent_channels=4, steps=1500, lr=5e-4, data=(EMBEDDED_TASKS["super_resolution"],),
                        objective="l1l2-mode", downsample=2),
}


def cache_dir() -> Path:
    """User cache for generated data and training state (``$I2AM_CACHE_DIR`` or ``<repo>/.cache``)."""
    return Path(os.environ.get("I2AM_CACHE_DIR", REPO_ROOT / ".cache"))


def ensure_data(generator: str, n_train: int = 2000, n_test: int = 128, seed: int = 0, **options) -> Path:
    """Generate the procedural tree once (deterministic) and return its root; ``options`` go to the generator."""
    variant = "".join(f"-{k}{v}" for k, v in sorted(options.items()))
    root = cache_dir() / "data" / f"{generator}-v{DATA_VERSION}{variant}-s{seed}-{n_train}-{n_test}"
    marker = root / "COMPLETE.json"
    if not marker.is_file():
        GENERATORS[generator](root, n_train=n_train, n_test=n_test, seed=seed, **options)
        marker.write_text(json.dumps({"generator": generator, "seed": seed, "n_train": n_train, "n_test": n_test,
                                      **options}))
    return root
