from __future__ import annotations

from pathlib import Path

import cleanfid.features
import lpips
import pytest
import torch

from benchmark.metrics.weights import (
    Unavailable,
    candidate_paths,
    cleanfid_dir,
    resolve_metric_weights,
    resolve_weight_file,
)


def test_cleanfid_dir_is_where_clean_fid_loads_from(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def record(path: str, download: bool = True, resize_inside: bool = False) -> torch.nn.Module:
        seen.append(path)
        return torch.nn.Identity()

    monkeypatch.setenv("TMPDIR", "/somewhere/else")  # clean-fid ignores it
    monkeypatch.setattr(cleanfid.features, "InceptionV3W", record)
    cleanfid.features.build_feature_extractor("clean", torch.device("cpu"), use_dataparallel=False)
    assert [Path(p) for p in seen] == [cleanfid_dir()]


def test_missing_inception_names_every_path(weight_dirs: dict[str, Path]) -> None:
    res = resolve_metric_weights("fid")
    assert isinstance(res, Unavailable)
    expected = (
        str(weight_dirs["weights"] / "inception-2015-12-05.pt"),
        str(weight_dirs["cleanfid"] / "inception-2015-12-05.pt"),
    )
    assert res.metric == "fid"
    assert res.looked_for == expected
    for path in expected:
        assert path in res.reason


def test_missing_alexnet_names_torch_home_checkpoint(weight_dirs: dict[str, Path]) -> None:
    res = resolve_metric_weights("lpips")
    assert isinstance(res, Unavailable)
    # The linear layers ship with lpips, so only the AlexNet backbone is missing.
    assert res.looked_for == (
        str(weight_dirs["weights"] / "alexnet-owt-7be5be79.pth"),
        str(weight_dirs["torch_home"] / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"),
    )


def test_synthetic_files_are_found_where_the_libraries_look(synthetic_weights: dict[str, Path]) -> None:
    assert resolve_metric_weights("fid") == {"inception": synthetic_weights["inception"]}
    found = resolve_metric_weights("lpips")
    assert found["alexnet"] == synthetic_weights["alexnet"]


def test_lpips_linear_layers_found_in_package(weight_dirs: dict[str, Path]) -> None:
    found = resolve_weight_file("lpips_alex_lin")
    assert found == Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    assert found.is_file()


def test_weights_dir_argument_wins_over_env_and_library(weight_dirs: dict[str, Path], tmp_path: Path) -> None:
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    (explicit / "inception-2015-12-05.pt").write_bytes(b"x")
    (weight_dirs["cleanfid"] / "inception-2015-12-05.pt").write_bytes(b"y")
    assert resolve_metric_weights("fid", explicit) == {"inception": explicit / "inception-2015-12-05.pt"}
    # Without the argument the env dir (empty) is skipped and clean-fid's own location is used.
    assert resolve_metric_weights("kid") == {"inception": weight_dirs["cleanfid"] / "inception-2015-12-05.pt"}
    assert candidate_paths("inception", explicit)[0] == explicit / "inception-2015-12-05.pt"


def test_unknown_names_raise() -> None:
    with pytest.raises(KeyError, match="known"):
        resolve_metric_weights("psnr")
    with pytest.raises(KeyError, match="known"):
        resolve_weight_file("vgg")
