"""The loaded-weights digest: hashed once per loaded model, over the raw bytes of each tensor in its own dtype."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file, save_file

import benchmark.api.model as model_api
from benchmark.registry import ADAPTERS

from adapter_tiny_models import BUILDERS


def reference_hash(module: torch.nn.Module) -> str:
    """The documented form, written out: per entry name, dtype, shape, then the SHA-256 of its bytes."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}:{str(t.dtype).removeprefix('torch.')}:{tuple(t.shape)}:".encode())
        h.update(hashlib.sha256(t.detach().contiguous().view(torch.uint8).numpy().tobytes()).digest())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_hash_is_over_raw_bytes_in_chunks(monkeypatch, dtype):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.LayerNorm(5)).to(dtype)
    whole = model_api.weights_hash(net)
    assert whole == reference_hash(net)
    monkeypatch.setattr(model_api, "HASH_CHUNK_BYTES", 6)  # chunks that split elements' runs, same digest
    assert model_api.weights_hash(net) == whole


def test_dtype_is_part_of_the_digest():
    net = torch.nn.Linear(4, 4)
    assert model_api.weights_hash(net.half()) != model_api.weights_hash(net.bfloat16())


def test_identity_hashes_once_and_a_changed_weight_gives_a_new_digest(tmp_path, monkeypatch):
    spec = BUILDERS["reference_unet"](tmp_path)
    calls = []
    real = model_api.weights_hash
    monkeypatch.setattr(model_api, "weights_hash", lambda m: calls.append(m) or real(m))
    adapter = ADAPTERS.get("reference_unet")(spec, "cpu")
    first = adapter.identity()
    per_load = 1 + len(adapter.identity_parts)
    assert len(calls) == per_load
    assert adapter.identity() == first and len(calls) == per_load  # the second call hashes nothing

    weights = next((tmp_path / "unet").glob("*.safetensors"))
    state = load_file(weights)
    name = sorted(state)[0]
    state[name] = state[name] + 1e-3
    save_file(state, weights)
    reloaded = ADAPTERS.get("reference_unet")(spec, "cpu").identity()
    assert len(calls) == 2 * per_load
    assert reloaded["weights"] != first["weights"]
    assert reloaded["weights"].split("-")[1] == first["weights"].split("-")[1]  # encoder and VAE unchanged
