from __future__ import annotations

import tempfile
from pathlib import Path

import lpips
import pytest

from benchmark.metrics.weights import (
    WEIGHTS_DIR_ENV,
    Unavailable,
    WeightsUnavailableError,
    candidate_paths,
    require_metric_weights,
    resolve_metric_weights,
    resolve_weight_file,
)


@pytest.fixture()
def empty_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point every weight location at empty temporary directories."""
    dirs = {name: tmp_path / name for name in ("weights", "torch_home", "tmp")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(dirs["weights"]))
    monkeypatch.setenv("TORCH_HOME", str(dirs["torch_home"]))
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(dirs["tmp"]))
    return dirs


def test_missing_inception_names_every_path(empty_dirs: dict[str, Path]) -> None:
    res = resolve_metric_weights("fid")
    assert isinstance(res, Unavailable)
    expected = (
        str(empty_dirs["weights"] / "inception-2015-12-05.pt"),
        str(empty_dirs["tmp"] / "inception-2015-12-05.pt"),
    )
    assert res.metric == "fid"
    assert res.looked_for == expected
    for path in expected:
        assert path in res.reason


def test_missing_alexnet_names_torch_home_checkpoint(empty_dirs: dict[str, Path]) -> None:
    res = resolve_metric_weights("lpips")
    assert isinstance(res, Unavailable)
    # The linear layers ship with lpips, so only the AlexNet backbone is missing.
    assert res.looked_for == (
        str(empty_dirs["weights"] / "alexnet-owt-7be5be79.pth"),
        str(empty_dirs["torch_home"] / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"),
    )
    with pytest.raises(WeightsUnavailableError) as err:
        require_metric_weights("lpips")
    assert err.value.unavailable == res


def test_lpips_linear_layers_found_in_package(empty_dirs: dict[str, Path]) -> None:
    found = resolve_weight_file("lpips_alex_lin")
    assert found == Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    assert found.is_file()


def test_weights_dir_argument_wins_over_env_and_library(empty_dirs: dict[str, Path], tmp_path: Path) -> None:
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    (explicit / "inception-2015-12-05.pt").write_bytes(b"x")
    (empty_dirs["tmp"] / "inception-2015-12-05.pt").write_bytes(b"y")
    assert resolve_metric_weights("fid", explicit) == {"inception": explicit / "inception-2015-12-05.pt"}
    # Without the argument the env dir (empty) is skipped and clean-fid's own location is used.
    assert resolve_metric_weights("kid") == {"inception": empty_dirs["tmp"] / "inception-2015-12-05.pt"}
    assert candidate_paths("inception", explicit)[0] == explicit / "inception-2015-12-05.pt"


def test_unknown_names_raise() -> None:
    with pytest.raises(KeyError, match="known"):
        resolve_metric_weights("psnr")
    with pytest.raises(KeyError, match="known"):
        resolve_weight_file("vgg")
