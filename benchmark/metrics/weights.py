"""Offline resolution of the pretrained weights that downstream metrics need.

Nothing here downloads. Each weight file is looked for, in order, in

1. the benchmark weights directory: the ``weights_dir`` argument, else the
   ``I2AM_WEIGHTS_DIR`` environment variable (skipped when neither is set);
2. the place where the owning library would itself have cached it:

   * clean-fid's Inception TorchScript ``inception-2015-12-05.pt`` in
     :func:`cleanfid_dir` (``/tmp`` whatever ``TMPDIR`` says, ``./`` on Windows:
     clean-fid's ``feature_extractor`` hard-codes these);
   * torchvision's ImageNet AlexNet ``alexnet-owt-7be5be79.pth`` (the LPIPS
     backbone) in ``torch.hub.get_dir()/checkpoints``, i.e.
     ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``);
   * the LPIPS linear calibration layers ``weights/v0.1/alex.pth``, which ship
     inside the installed ``lpips`` package.

A metric whose weights are missing is reported as :class:`Unavailable`
naming the file and every absolute path that was looked at, so a report can
say exactly what to copy where.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

WEIGHTS_DIR_ENV = "I2AM_WEIGHTS_DIR"

__all__ = [
    "WEIGHTS_DIR_ENV",
    "WEIGHT_FILES",
    "METRIC_WEIGHTS",
    "WeightFile",
    "Unavailable",
    "cleanfid_dir",
    "weights_dir_from_env",
    "candidate_paths",
    "resolve_weight_file",
    "resolve_metric_weights",
]


@dataclass(frozen=True)
class WeightFile:
    """One pretrained weight file and where its library caches it.

    Attributes:
        key: short identifier used in :data:`METRIC_WEIGHTS` (e.g. ``"inception"``).
        relative_path: path of the file relative to the benchmark weights
            directory; its basename is the name the library itself uses.
        description: human-readable description used in error messages.
        library_dirs: returns the directories the owning library looks in,
            evaluated at resolution time so environment changes are honoured.
    """

    key: str
    relative_path: str
    description: str
    library_dirs: Callable[[], list[Path]]

    @property
    def filename(self) -> str:
        return Path(self.relative_path).name


def cleanfid_dir() -> Path:
    """Where clean-fid's ``feature_extractor`` loads (and would download) the Inception file."""
    return Path("./" if platform.system() == "Windows" else "/tmp")


def _cleanfid_dirs() -> list[Path]:
    # Looked up at call time so that tests can point it (and clean-fid) at a temporary folder.
    return [cleanfid_dir()]


def _torch_hub_checkpoint_dirs() -> list[Path]:
    # torch.hub.get_dir() reads TORCH_HOME / XDG_CACHE_HOME at call time; this is
    # the directory torchvision's load_state_dict_from_url would download into.
    return [Path(torch.hub.get_dir()) / "checkpoints"]


def _lpips_package_dirs() -> list[Path]:
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return []
    return [Path(spec.origin).parent / "weights" / "v0.1"]


WEIGHT_FILES: Mapping[str, WeightFile] = {
    "inception": WeightFile(
        key="inception",
        relative_path="inception-2015-12-05.pt",
        description="clean-fid Inception-v3 TorchScript (FID/KID feature extractor)",
        library_dirs=_cleanfid_dirs,
    ),
    "alexnet": WeightFile(
        key="alexnet",
        relative_path="alexnet-owt-7be5be79.pth",
        description="torchvision ImageNet AlexNet (LPIPS backbone)",
        library_dirs=_torch_hub_checkpoint_dirs,
    ),
    "lpips_alex_lin": WeightFile(
        key="lpips_alex_lin",
        # Kept in a sub-folder: a bare "alex.pth" in a shared weights dir is ambiguous.
        relative_path="lpips/v0.1/alex.pth",
        description="LPIPS v0.1 linear calibration layers for AlexNet",
        library_dirs=_lpips_package_dirs,
    ),
}

# Which weight files each metric needs; FID and KID share the Inception network.
METRIC_WEIGHTS: Mapping[str, tuple[str, ...]] = {
    "fid": ("inception",),
    "kid": ("inception",),
    "lpips": ("alexnet", "lpips_alex_lin"),
}


@dataclass(frozen=True)
class Unavailable:
    """A metric that cannot be computed offline, and why.

    Attributes:
        metric: metric name (e.g. ``"fid"``).
        reason: one-line explanation naming the missing file(s).
        looked_for: every absolute path that was checked for the missing
            file(s), in search order.
    """

    metric: str
    reason: str
    looked_for: tuple[str, ...]


def weights_dir_from_env(weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The benchmark weights directory: ``weights_dir`` if given, else ``$I2AM_WEIGHTS_DIR``, else None."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser().absolute()
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        return Path(env).expanduser().absolute()
    return None


def _weight_file(key: str) -> WeightFile:
    try:
        return WEIGHT_FILES[key]
    except KeyError:
        raise KeyError(f"unknown weight file {key!r}; known: {sorted(WEIGHT_FILES)}") from None


def candidate_paths(key: str, weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """All absolute paths checked for weight file ``key``, in search order (duplicates removed)."""
    spec = _weight_file(key)
    paths: list[Path] = []
    root = weights_dir_from_env(weights_dir)
    if root is not None:
        paths.append(root / spec.relative_path)
    paths.extend(d.expanduser().absolute() / spec.filename for d in spec.library_dirs())
    unique: list[Path] = []
    for p in paths:
        if p not in unique:
            unique.append(p)
    return unique


def resolve_weight_file(
    key: str, weights_dir: str | os.PathLike[str] | None = None, *, metric: str | None = None
) -> Path | Unavailable:
    """Path of the first existing candidate for weight file ``key``, or an :class:`Unavailable` record.

    Args:
        key: a key of :data:`WEIGHT_FILES` (``"inception"``, ``"alexnet"``, ``"lpips_alex_lin"``).
        weights_dir: benchmark weights directory; defaults to ``$I2AM_WEIGHTS_DIR``.
        metric: metric name to put in the record; defaults to ``key``.
    """
    spec = _weight_file(key)
    looked = candidate_paths(key, weights_dir)
    for path in looked:
        if path.is_file():
            return path
    return Unavailable(
        metric=metric or key,
        reason=(
            f"{spec.description} '{spec.filename}' not found; looked for: "
            + ", ".join(str(p) for p in looked)
            + f" (no download is attempted; place the file in ${WEIGHTS_DIR_ENV}/{spec.relative_path})"
        ),
        looked_for=tuple(str(p) for p in looked),
    )


def resolve_metric_weights(
    metric: str, weights_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path] | Unavailable:
    """Resolve every weight file ``metric`` needs.

    Returns:
        ``{weight_key: path}`` when all files exist, else one :class:`Unavailable`
        whose reason names each missing file and whose ``looked_for`` lists the
        paths checked for the missing files.
    """
    try:
        keys = METRIC_WEIGHTS[metric]
    except KeyError:
        raise KeyError(f"metric {metric!r} needs no known weights; known: {sorted(METRIC_WEIGHTS)}") from None
    found: dict[str, Path] = {}
    missing: list[Unavailable] = []
    for key in keys:
        resolved = resolve_weight_file(key, weights_dir, metric=metric)
        if isinstance(resolved, Unavailable):
            missing.append(resolved)
        else:
            found[key] = resolved
    if not missing:
        return found
    return Unavailable(
        metric=metric,
        reason=f"{metric} unavailable: " + "; ".join(m.reason for m in missing),
        looked_for=tuple(p for m in missing for p in m.looked_for),
    )
