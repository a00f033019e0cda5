"""Contract suite: every registered adapter, on its tiny random model, through generate_with_capture."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import benchmark.adapters  # noqa: F401  (registers the adapters)
from benchmark.api.model import ModelAdapter, SamplingSettings
from benchmark.api.sample import collate
from benchmark.capture import I2AMAccumulator
from benchmark.capture.joint_capture import OutputSpaceAccumulator
from benchmark.capture.session import CaptureSession
from benchmark.run.generation import CaptureSettings, generate_with_capture
from benchmark.registry import ADAPTERS

from adapter_tiny_models import BUILDERS, IMAGE, tiny_sample

SAMPLING = SamplingSettings(num_inference_steps=2, guidance_scale=3.0)
SEED = 7


@dataclass
class Run:
    adapter: ModelAdapter
    batch: dict
    images: torch.Tensor
    acc: I2AMAccumulator
    plain: torch.Tensor


@pytest.fixture(scope="module", params=ADAPTERS.names())
def run(request, tmp_path_factory) -> Run:
    name = request.param
    if name not in BUILDERS:
        pytest.fail(f"adapter {name!r} has no tiny-model builder: add one to tests/adapters/adapter_tiny_models.py")
    spec = BUILDERS[name](tmp_path_factory.mktemp(name))
    adapter = ADAPTERS.get(name)(spec, "cpu")
    batch = collate([tiny_sample(0), tiny_sample(1)])
    images, acc = generate_with_capture(adapter, batch, SAMPLING, SEED, CaptureSettings())
    plain, none = generate_with_capture(adapter, batch, SAMPLING, SEED, CaptureSettings(enabled=False))
    assert none is None
    return Run(adapter, batch, images, acc, plain)


def test_output_shape_and_range(run):
    assert run.images.shape == (2, 3, IMAGE, IMAGE)
    assert run.images.dtype == torch.float32
    assert torch.isfinite(run.images).all()
    assert run.images.min() >= 0 and run.images.max() <= 1
    assert run.images.std() > 0


def test_generated_side_map_is_finite_and_not_constant(run):
    assert run.acc.layer_names, "no attention layer was captured"
    ulam = run.acc.generated_maps()["ulam"]
    assert ulam.shape == (2, *run.adapter.latent_grid((IMAGE, IMAGE)))
    assert torch.isfinite(ulam).all()
    assert ulam.flatten(1).std(1).min() > 0


def test_every_step_is_captured_once_per_layer(run):
    # Two steps in two time groups: one conditional call per layer and step, routed by callback_on_step_end.
    for layer, calls in run.acc.calls.items():
        assert calls.tolist() == [1, 1], layer


def test_reference_side_maps_exist_iff_more_than_one_kept_token(run):
    layout = run.adapter.token_layout
    maps = run.acc.reference_maps()
    if layout.n_kept > 1:
        ulam = maps["ulam"]
        assert ulam.shape == (2, *layout.grid)
        assert torch.isfinite(ulam).all() and ulam.flatten(1).std(1).min() > 0
        restricted = run.acc.reference_maps(restricted=True)["ulam"]  # eq. (17), the batch has region masks
        assert torch.isfinite(restricted).all()
        assert torch.isfinite(run.acc.sram(1, 1)).all()
    else:
        assert maps == {}


def test_capture_leaves_output_unchanged(run):
    assert (run.images - run.plain).abs().max().item() < 1e-5


def test_output_does_not_depend_on_batching(run):
    alone, _ = generate_with_capture(run.adapter, collate([tiny_sample(1)]), SAMPLING, SEED,
                                     CaptureSettings(enabled=False))
    assert (alone[0] - run.plain[1]).abs().max().item() < 1e-4


def test_identity_and_default_sampling(run):
    ident = run.adapter.identity()
    assert ident["adapter"] == run.adapter.spec.adapter and len(ident["weights"]) >= 16
    sampling = run.adapter.default_sampling()
    assert sampling.num_inference_steps >= 1 and sampling.guidance_scale >= 1


def _installed(module: torch.nn.Module) -> object:
    """What a capture replaces on an attention module: its processor (diffusers) or its forward (a patch)."""
    return module.__dict__.get("forward") or getattr(module, "processor", None)


def test_install_capture_replaces_the_captured_modules_and_restores_them(run):
    adapter = run.adapter
    modules = adapter.captured_modules()
    assert modules
    before = [_installed(m) for m in modules]
    session = CaptureSession(run.acc, n_samples=len(run.batch["sample_id"]))
    with adapter.install_capture(session, run.batch, adapter.concept_accumulator(SAMPLING.num_inference_steps)):
        during = [_installed(m) for m in modules]
    assert all(d is not b for d, b in zip(during, before))
    assert [_installed(m) for m in modules] == before


def test_output_space_maps_only_from_adapters_that_have_them(run):
    """Adapters without an output-space accumulator refuse one with a message naming the model."""
    adapter = run.adapter
    if adapter.concept_accumulator(2) is not None:
        pytest.skip("a joint-attention adapter: its capture fills output-space maps")
    session = CaptureSession(run.acc, n_samples=len(run.batch["sample_id"]))
    with pytest.raises(ValueError, match=rf"need a joint-attention model; model {adapter.spec.name!r}"):
        adapter.install_capture(session, run.batch, OutputSpaceAccumulator(2))
