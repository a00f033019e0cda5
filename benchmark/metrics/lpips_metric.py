"""LPIPS (AlexNet, v0.1) from local weights only.

The network is ``lpips.LPIPS(net="alex", pnet_rand=True, pretrained=False)``:
``pnet_rand=True`` makes lpips build torchvision's AlexNet with
``pretrained=False`` (so torchvision never reaches its download code) and
``pretrained=False`` stops lpips loading its linear layers implicitly. Both
weight sets are then loaded here, strictly, from files resolved by
:mod:`benchmark.metrics.weights`:

* the ImageNet AlexNet ``features.*`` tensors from ``alexnet-owt-7be5be79.pth``,
  mapped onto lpips' ``net.slice{k}.{i}`` modules (lpips splits
  ``alexnet.features`` into five slices that keep torchvision's indices);
* the v0.1 linear calibration layers ``lin{k}.model.1.weight`` from the
  ``alex.pth`` shipped inside the lpips package.

Inputs are RGB in [-1, 1] (lpips' convention; map [0, 1] images with ``2x - 1``).
"""

from __future__ import annotations

import os
import re
import warnings

import torch

from benchmark.metrics.results import MetricValue, package_version
from benchmark.metrics.weights import Unavailable, resolve_metric_weights

LPIPS_MODE = "alex-v0.1"
# AlexNet's strided conv and three max-pools leave no spatial extent below this size.
LPIPS_MIN_SIZE = 31

__all__ = ["LPIPS_MIN_SIZE", "LPIPS_MODE", "LPIPSMetric", "load_lpips_alex", "lpips_distance", "compute_lpips"]


def _load_alexnet_backbone(model: torch.nn.Module, path: os.PathLike[str] | str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    # lpips' alexnet keeps torchvision's module indices inside each slice, so
    # "features.{i}.{param}" becomes "slice{k}.{i}.{param}" for the slice holding i.
    for key in model.net.state_dict():
        _slice, index, param = key.split(".")
        source = f"features.{index}.{param}"
        if source in state:
            mapped[key] = state[source]
        else:
            missing.append(source)
    if missing:
        raise ValueError(f"{path}: not a torchvision AlexNet state dict; missing {missing}")
    model.net.load_state_dict(mapped, strict=True)


def _load_linear_layers(model: torch.nn.Module, path: os.PathLike[str] | str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    # "lins.{k}.*" aliases the same tensors as "lin{k}.*" (a ModuleList over them); the file holds "lin{k}" only.
    expected = {k for k in model.state_dict() if re.match(r"lin\d+\.", k)}
    if set(state) != expected:
        raise ValueError(
            f"{path}: LPIPS linear weights do not match the alex network "
            f"(missing {sorted(expected - set(state))}, unexpected {sorted(set(state) - expected)})"
        )
    model.load_state_dict(state, strict=False)


def load_lpips_alex(
    weights_dir: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module | Unavailable:
    """LPIPS-AlexNet v0.1 with both weight sets loaded from local files, or :class:`Unavailable`.

    The module maps two (B, 3, H, W) images in [-1, 1] (H, W >= 31) to distances (B, 1, 1, 1).
    """
    resolved = resolve_metric_weights("lpips", weights_dir)
    if isinstance(resolved, Unavailable):
        return resolved
    import lpips

    with warnings.catch_warnings():
        # lpips still passes torchvision's deprecated `pretrained=` keyword.
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*", category=UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    _load_alexnet_backbone(model, resolved["alexnet"])
    _load_linear_layers(model, resolved["lpips_alex_lin"])
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval().to(device)


def _check_pair(img1: torch.Tensor, img2: torch.Tensor) -> None:
    if img1.shape != img2.shape:
        raise ValueError(f"image shapes differ: {tuple(img1.shape)} vs {tuple(img2.shape)}")
    if img1.ndim != 4 or img1.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(img1.shape)}")
    if min(img1.shape[-2:]) < LPIPS_MIN_SIZE:
        raise ValueError(
            f"LPIPS-AlexNet needs H, W >= {LPIPS_MIN_SIZE}, got {tuple(img1.shape[-2:])}; upsample the images first"
        )
    for name, img in (("img1", img1), ("img2", img2)):
        if img.numel() and (float(img.min()) < -1.0 or float(img.max()) > 1.0):
            raise ValueError(
                f"{name}: LPIPS expects values in [-1, 1], got range [{float(img.min()):.4g}, {float(img.max()):.4g}]"
            )


@torch.no_grad()
def lpips_distance(img1: torch.Tensor, img2: torch.Tensor, network: torch.nn.Module) -> torch.Tensor:
    """Per-sample LPIPS distance.

    Args:
        img1, img2: float tensors (B, 3, H, W), RGB in [-1, 1], H and W >= 31.
        network: an LPIPS-style module ``network(img1, img2) -> (B, 1, 1, 1)``,
            e.g. :func:`load_lpips_alex`'s result.

    Returns:
        float tensor (B,) on the CPU; 0 for identical images, larger is more different.
    """
    _check_pair(img1, img2)
    device = next(network.parameters()).device
    out = network(img1.to(device), img2.to(device))
    return out.reshape(img1.shape[0]).float().cpu()


class LPIPSMetric:
    """Accumulates per-sample LPIPS (torchmetrics-style ``update``/``merge``/``compute``).

    Args:
        network: LPIPS-style module (see :func:`lpips_distance`); default loads
            LPIPS-AlexNet from local weights.
        weights_dir: benchmark weights directory for the default network.
        device: device of the default network.

    If the default weights are missing, ``update`` only counts samples and
    ``compute`` returns a :class:`MetricValue` with ``value=None`` whose reason
    names the missing files and the paths looked at.
    """

    def __init__(
        self,
        network: torch.nn.Module | None = None,
        weights_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.unavailable: Unavailable | None = None
        self.network: torch.nn.Module | None
        if network is None:
            loaded = load_lpips_alex(weights_dir, device)
            if isinstance(loaded, Unavailable):
                self.unavailable, self.network = loaded, None
            else:
                self.network = loaded
        else:
            self.network = network.eval().to(device)
        self._values: list[torch.Tensor] = []
        self._n_seen = 0
        self._resolution: tuple[int, int] | None = None

    def update(self, img1: torch.Tensor, img2: torch.Tensor) -> None:
        """Add a batch of pairs (B, 3, H, W) in [-1, 1]."""
        _check_pair(img1, img2)
        res = (int(img1.shape[-2]), int(img1.shape[-1]))
        if self._resolution is not None and res != self._resolution:
            raise ValueError(f"resolution changed from {self._resolution} to {res}")
        self._resolution = res
        self._n_seen += int(img1.shape[0])
        if self.network is not None:
            self._values.append(lpips_distance(img1, img2, self.network))

    def merge(self, other: LPIPSMetric) -> None:
        if other._resolution is not None and self._resolution not in (None, other._resolution):
            raise ValueError(f"cannot merge resolutions {self._resolution} and {other._resolution}")
        self._resolution = self._resolution or other._resolution
        self._values.extend(other._values)
        self._n_seen += other._n_seen

    def values(self) -> torch.Tensor:
        """Per-sample distances so far, float tensor (N,)."""
        if self.unavailable is not None:
            raise RuntimeError(self.unavailable.reason)
        return torch.cat(self._values) if self._values else torch.empty(0)

    def compute(self) -> MetricValue:
        """Mean LPIPS over all pairs (lower is better)."""
        common = {
            "implementation": package_version("lpips"),
            "mode": LPIPS_MODE,
            "resolution": self._resolution,
            "n_samples": self._n_seen,
            "direction": "lower",
        }
        if self.unavailable is not None:
            return MetricValue.missing(
                "lpips", self.unavailable.reason, extra={"looked_for": list(self.unavailable.looked_for)}, **common
            )
        vals = self.values()
        if vals.numel() == 0:
            raise ValueError("LPIPSMetric.compute() called before any update()")
        return MetricValue(name="lpips", value=float(vals.double().mean()), **common)


def compute_lpips(
    img1: torch.Tensor,
    img2: torch.Tensor,
    network: torch.nn.Module | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> MetricValue:
    """Mean LPIPS of pairs (B, 3, H, W) in [-1, 1]; ``value=None`` with a reason when weights are missing."""
    metric = LPIPSMetric(network, weights_dir, device)
    metric.update(img1, img2)
    return metric.compute()
