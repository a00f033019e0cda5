"""Shared fixtures for metric tests: no test may reach the network, and weight files are synthetic.

``weight_dirs`` points every place a weight file is looked for (the benchmark
weights folder, ``$TORCH_HOME``, clean-fid's Inception folder) at empty
temporary folders, for clean-fid itself as well as for our resolver, so the
real ``/tmp/inception-2015-12-05.pt`` is never read. ``synthetic_weights``
then writes random, seeded files in the real formats there: a TorchScript
module with the interface clean-fid's ``InceptionV3W`` loads, and a
torchvision AlexNet state dict (lpips' linear layers ship with lpips).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import cleanfid.features
import pytest
import torch
import torch.hub
import torchvision

from benchmark.metrics import weights
from benchmark.metrics.weights import WEIGHTS_DIR_ENV


def _no_download(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a metric test tried to download: args={args!r}")


@pytest.fixture(autouse=True)
def block_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    # clean-fid downloads through urllib.request.urlopen; torchvision/lpips
    # through torch.hub.load_state_dict_from_url -> download_url_to_file.
    monkeypatch.setattr(urllib.request, "urlopen", _no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)


class _InceptionLayers(torch.nn.Module):
    """Tiny stand-in for Inception's ``layers``: (B, 3, 299, 299) normalised -> (B, 2048, 1, 1), like the real one.

    Only the first 16 channels carry signal; the other 2032 are exactly zero, which makes
    scipy's sqrtm of the 2048x2048 covariance product inside FID several times quicker.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=8, stride=8)
        self.pool = torch.nn.AdaptiveAvgPool2d(4)
        self.proj = torch.nn.Conv2d(8 * 16, 16, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv(x))).reshape(x.shape[0], 8 * 16, 1, 1)
        return torch.nn.functional.pad(10 * torch.relu(self.proj(h)), (0, 0, 0, 0, 0, 2048 - 16))


class _InceptionStandIn(torch.nn.Module):
    """What clean-fid uses of ``inception-2015-12-05.pt``: ``.layers``, and ``forward(x, return_features)``."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _InceptionLayers()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers((x - 128) / 128).reshape(x.shape[0], 2048)


def write_inception(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.jit.script(_InceptionStandIn().eval()).save(str(path))
    return path


def write_alexnet(path: Path, seed: int = 1) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.alexnet().state_dict(), path)
    return path


@pytest.fixture()
def weight_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty folders for every weight location; clean-fid and our resolver share the Inception one."""
    dirs = {name: tmp_path / name for name in ("weights", "torch_home", "cleanfid")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(dirs["weights"]))
    monkeypatch.setenv("TORCH_HOME", str(dirs["torch_home"]))
    monkeypatch.setattr(weights, "cleanfid_dir", lambda: dirs["cleanfid"])
    # clean-fid hard-codes "/tmp" in feature_extractor; redirect only the folder its own InceptionV3W loads from.
    real = cleanfid.features.InceptionV3W
    monkeypatch.setattr(
        cleanfid.features,
        "InceptionV3W",
        lambda path, download=True, resize_inside=False: real(str(dirs["cleanfid"]), download, resize_inside),
    )
    return dirs


@pytest.fixture()
def synthetic_weights(weight_dirs: dict[str, Path]) -> dict[str, Path]:
    """Random, seeded weight files in the real formats where clean-fid and torchvision look for them."""
    return {
        "inception": write_inception(weight_dirs["cleanfid"] / "inception-2015-12-05.pt"),
        "alexnet": write_alexnet(weight_dirs["torch_home"] / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"),
    }
