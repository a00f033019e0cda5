"""Shared fixtures for metric tests: no test may reach the network."""

from __future__ import annotations

import urllib.request

import pytest
import torch.hub


def _no_download(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a metric test tried to download: args={args!r}")


@pytest.fixture(autouse=True)
def block_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    # clean-fid downloads through urllib.request.urlopen; torchvision/lpips
    # through torch.hub.load_state_dict_from_url -> download_url_to_file.
    monkeypatch.setattr(urllib.request, "urlopen", _no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
