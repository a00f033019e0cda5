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


WEIGHTS_DIR_ENV = "I2AM_WEIGHTS_DIR"

__all__ = ["WEIGHTS_DIR_ENV", "WEIGHT_FILES", "METRIC_WEIGHTS", "WeightFile", "Unavailable", "cleanfid_dir",
           "candidate_paths", "resolve_weight_file", "resolve_metric_weights"]


@dataclass(frozen=True)
class WeightFile:
    """One pretrained weight file and where its library caches it.

    Attributes:
        relative_path: path of the file relative to the benchmark weights
            directory; its basename is the name the library itself uses.
        description: human-readable description used in error messages.
        library_dirs: returns the directories the owning library looks in,
            evaluated at resolution time so environment changes are honoured.
    """

    relative_path: str
    description: str
    library_dirs: Callable[[], list[Path]]

    @property
    def filename(self) -> str:
        return Path(self.relative_path).name


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()`` (which honours ``torch.hub.set_dir``) once torch is loaded; before that the same
    rule read from the environment (``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``, else
    ``~/.cache/torch/hub``), so that a run with nothing to do need not load torch to look for weights."""
    import sys

    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub"


def cleanfid_dir() -> Path:
    """Where clean-fid's ``feature_extractor`` loads (and would download) the Inception file."""
    return Path("./" if platform.system() == "Windows" else "/tmp")


def _lpips_package_dirs() -> list[Path]:
    spec = importlib.util.find_spec("lpips")
    return [] if spec is None or spec.origin is None else [Path(spec.origin).parent / "weights" / "v0.1"]


WEIGHT_FILES: Mapping[str, WeightFile] = {
    # cleanfid_dir is looked up at call time so that tests can point it (and clean-fid) at a temporary folder.
    "inception": WeightFile("inception-2015-12-05.pt",
                            "clean-fid Inception-v3 TorchScript (FID/KID feature extractor)", lambda: [cleanfid_dir()]),
    # torch.hub.get_dir() reads TORCH_HOME / XDG_CACHE_HOME at call time; this is the directory
    # torchvision's load_state_dict_from_url would download into.
    "alexnet": WeightFile("alexnet-owt-7be5be79.pth", "torchvision ImageNet AlexNet (LPIPS backbone)",
                          lambda: [torch_hub_dir() / "checkpoints"]),
    # Kept in a sub-folder: a bare "alex.pth" in a shared weights dir is ambiguous.
    "lpips_alex_lin": WeightFile("lpips/v0.1/alex.pth", "LPIPS v0.1 linear calibration layers for AlexNet",
                                 _lpips_package_dirs),
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


def candidate_paths(key: str, weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """All absolute paths checked for weight file ``key``, in search order (duplicates removed): the benchmark
    weights directory (``weights_dir``, else ``$I2AM_WEIGHTS_DIR`` if set), then the library's own folders."""
    try:
        spec = WEIGHT_FILES[key]
    except KeyError:
        raise KeyError(f"unknown weight file {key!r}; known: {sorted(WEIGHT_FILES)}") from None
    root = weights_dir if weights_dir is not None else (os.environ.get(WEIGHTS_DIR_ENV) or None)
    paths = [] if root is None else [Path(root).expanduser().absolute() / spec.relative_path]
    return list(dict.fromkeys(paths + [d.expanduser().absolute() / spec.filename for d in spec.library_dirs()]))


def resolve_weight_file(key: str, weights_dir: str | os.PathLike[str] | None = None) -> Path | Unavailable:
    """Path of the first existing candidate for weight file ``key`` (a key of :data:`WEIGHT_FILES`), or an
    :class:`Unavailable` record; ``weights_dir`` defaults to ``$I2AM_WEIGHTS_DIR``."""
    looked = candidate_paths(key, weights_dir)
    for path in looked:
        if path.is_file():
            return path
    spec = WEIGHT_FILES[key]
    return Unavailable(
        metric=key,
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
    found = {key: resolve_weight_file(key, weights_dir) for key in keys}
    missing = [m for m in found.values() if isinstance(m, Unavailable)]
    if not missing:
        return found
    return Unavailable(
        metric=metric,
        reason=f"{metric} unavailable: " + "; ".join(m.reason for m in missing),
        looked_for=tuple(p for m in missing for p in m.looked_for),
    )
