from __future__ import annotations

import warnings
from pathlib import Path

import lpips
import pytest
import torch
import torchvision

from benchmark.metrics.lpips_metric import LPIPSMetric, compute_lpips, load_lpips_alex, lpips_distance
from benchmark.metrics.weights import WEIGHTS_DIR_ENV, Unavailable, resolve_metric_weights


def random_trunk_lpips() -> torch.nn.Module:
    """LPIPS with a seeded random AlexNet trunk and the packaged linear layers; nothing is downloaded."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)


def pair(seed: int, n: int = 3, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(n, 3, size, size, generator=g)).clamp(-1, 1)
    return a, b


def test_lpips_plumbing_with_injected_network() -> None:
    net = random_trunk_lpips()
    a, b = pair(0)
    per_sample = lpips_distance(a, b, net)
    assert per_sample.shape == (3,)
    with torch.no_grad():
        torch.testing.assert_close(per_sample, net(a, b).flatten())
    assert torch.all(lpips_distance(a, a, net) == 0)

    value = compute_lpips(a, b, network=net)
    assert value.value == pytest.approx(float(per_sample.double().mean()))
    assert (value.name, value.direction, value.n_samples, value.resolution) == ("lpips", "lower", 3, (64, 64))
    assert value.implementation.startswith("lpips ")


def test_lpips_shards_agree() -> None:
    net = random_trunk_lpips()
    a, b = pair(1, n=4)
    whole = LPIPSMetric(network=net)
    whole.update(a, b)
    left, right = LPIPSMetric(network=net), LPIPSMetric(network=net)
    left.update(a[:1], b[:1])
    right.update(a[1:], b[1:])
    left.merge(right)
    torch.testing.assert_close(left.values(), whole.values())
    assert left.compute().value == pytest.approx(whole.compute().value)


def test_lpips_input_validation() -> None:
    net = random_trunk_lpips()
    a, b = pair(2)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        lpips_distance(a * 2, b, net)
    with pytest.raises(ValueError, match="H, W >= 31"):
        lpips_distance(a[..., :30, :30], b[..., :30, :30], net)
    assert lpips_distance(a[..., :31, :31], b[..., :31, :31], net).shape == (3,)


def test_load_lpips_alex_maps_torchvision_features(tmp_path: Path) -> None:
    torch.manual_seed(1)
    alexnet = torchvision.models.alexnet(weights=None)
    # Only features.* are needed; keeping the classifier out keeps the file small.
    features = {k: v for k, v in alexnet.state_dict().items() if k.startswith("features.")}
    torch.save(features, tmp_path / "alexnet-owt-7be5be79.pth")

    model = load_lpips_alex(weights_dir=tmp_path)
    assert not isinstance(model, Unavailable)
    # lpips keeps torchvision's indices as module names inside each slice.
    torch.testing.assert_close(model.net.get_submodule("slice1.0").weight, features["features.0.weight"])
    torch.testing.assert_close(model.net.get_submodule("slice2.3").bias, features["features.3.bias"])
    torch.testing.assert_close(model.net.get_submodule("slice5.10").weight, features["features.10.weight"])
    packaged = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.lin0.model[1].weight, packaged["lin0.model.1.weight"])
    assert not any(p.requires_grad for p in model.parameters())

    a, b = pair(3, n=2)
    # The loaded model is an ordinary lpips.LPIPS; compare to one built from the same tensors by hand.
    reference = random_trunk_lpips()
    for k, idx in ((1, 0), (2, 3), (3, 6), (4, 8), (5, 10)):
        module = reference.net.get_submodule(f"slice{k}.{idx}")
        module.weight.data.copy_(features[f"features.{idx}.weight"])
        module.bias.data.copy_(features[f"features.{idx}.bias"])
    torch.testing.assert_close(lpips_distance(a, b, model), lpips_distance(a, b, reference))


def test_load_lpips_alex_rejects_wrong_file(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "alexnet-owt-7be5be79.pth")
    with pytest.raises(ValueError, match="not a torchvision AlexNet"):
        load_lpips_alex(weights_dir=tmp_path)


def test_missing_alexnet_reports_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("weights", "torch_home"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    a, b = pair(4)
    value = compute_lpips(a, b)
    looked = [
        str(tmp_path / "weights" / "alexnet-owt-7be5be79.pth"),
        str(tmp_path / "torch_home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"),
    ]
    assert value.value is None
    assert value.extra["looked_for"] == looked
    assert all(p in value.unavailable for p in looked)
    assert value.n_samples == 3


_LPIPS = resolve_metric_weights("lpips")


@pytest.mark.skipif(
    isinstance(_LPIPS, Unavailable), reason=f"LPIPS AlexNet weights not present: {getattr(_LPIPS, 'reason', '')}"
)
def test_real_lpips_path() -> None:
    a, b = pair(5, n=2)
    value = compute_lpips(a, b)
    assert value.value is not None and 0.0 < value.value < 2.0
    assert compute_lpips(a, a).value == 0.0
