"""Memory of the capture: the joint block path's temporaries, the CUDA log-sum-exp branch, separable resizes.

The CUDA branch of :func:`~benchmark.capture.attention.fused_attention` (a
fused kernel that returns the rows' log-sum-exp) cannot run here; the capture
code downstream of it is the same whatever provides the log-sum-exp, so it is
exercised on CPU by injecting a provider that returns the public function's
output and a float64 log-sum-exp of the same logits.
"""

from __future__ import annotations

import math
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from benchmark.capture import I2AMAccumulator, TokenLayout
from benchmark.capture import attention as attention_module
from benchmark.capture.accumulator import _resize_axis, resize_adjoint, resize_columns
from benchmark.capture.attention import BlockProbabilities, chunked_logsumexp, fused_attention
from benchmark.capture.joint_capture import FluxI2AMProcessor, JointLayout, capture_joint
from benchmark.capture.session import CaptureSession

from test_capture_joint import GEN, N_GEN, N_REF, REF, T, inputs, tiny_flux

MAPS = ("ulam", "hlam", "llam", "layer_heads")


class PeakTemporaries(TorchDispatchMode):
    """Tracks the storages that tensor operations allocate inside the mode while they are alive.

    ``peak``: the largest total of those alive at once (bytes); ``largest``:
    the largest single one. Storages that existed before (inputs, state)
    are not counted; workspaces a kernel allocates internally are not seen.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = self.largest = 0

    def _free(self, key: int, n: int) -> None:
        if self.live.pop(key, None) is not None:
            self.current -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        known = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            key, n = st.data_ptr(), st.nbytes()
            if n == 0 or key in known or key in self.live:
                continue
            self.live[key] = n
            self.current += n
            self.peak, self.largest = max(self.peak, self.current), max(self.largest, n)
            weakref.finalize(st, self._free, key, n)
        return out


def float64_lse_attention(q, k, v, scale, attn_mask):
    """A stand-in for the CUDA kernels: the public output, and the log-sum-exp of the same logits in float64."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
    s = q.double() @ k.double().transpose(-1, -2) * scale
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else s + attn_mask.double()
    return out, s.logsumexp(-1).float()


def no_lse_attention(q, k, v, scale, attn_mask):
    """A kernel that returns no log-sum-exp (the math backend): the capture computes it by chunks."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale), None


def joint_maps(mask: bool, **capture_kwargs):
    model = tiny_flux()
    region = torch.rand(2, *GEN, generator=torch.Generator().manual_seed(3))
    acc = I2AMAccumulator(GEN, TokenLayout(grid=REF), num_steps=1, levels=("ulam", "hlam", "llam", "sram"),
                          region_mask=region)
    kwargs = {}
    if mask:
        m = torch.ones(2, T + N_GEN + N_REF, dtype=torch.bool)
        m[0, 1], m[1, -1] = False, False  # a text token of one sample, a reference token of the other
        kwargs["joint_attention_kwargs"] = {"attention_mask": m[:, None, None, :]}
    with capture_joint(model, CaptureSession(acc, 2), JointLayout(T, N_GEN, N_REF), **capture_kwargs):
        sample = model(**inputs(), **kwargs).sample
    out = {"sample": sample, "volume": acc.reference_volume()}
    for side, maps in (("g", acc.generated_maps()), ("r", acc.reference_maps()),
                       ("rm", acc.reference_maps(restricted=True))):
        out.update({f"{side}/{key}": maps[key] for key in MAPS})
    return out


def assert_same_maps(actual: dict, expected: dict, tol: float = 1e-6) -> None:
    """Every map equal to ``tol`` of its largest value; the model output equal too."""
    for key, want in expected.items():
        scale = want.abs().max().item()
        assert (actual[key] - want).abs().max().item() <= tol * scale + 1e-12, key


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("provider", [float64_lse_attention, no_lse_attention])
def test_joint_maps_do_not_depend_on_where_the_log_sum_exp_comes_from(mask, provider):
    today = joint_maps(mask)
    assert_same_maps(joint_maps(mask, attention=provider), today)


@pytest.mark.parametrize("mask", [False, True])
def test_joint_maps_by_row_chunks_equal_one_block(mask):
    # a budget of a few hundred bytes makes every chunk one generated query (and the chunked
    # log-sum-exp one key at a time where there is a mask)
    whole = joint_maps(mask)
    for provider in (fused_attention, float64_lse_attention):
        assert_same_maps(joint_maps(mask, attention=provider, budget=600), whole)


def test_budget_is_the_module_constant_unless_given(monkeypatch):
    monkeypatch.setattr(attention_module, "CAPTURE_BUDGET_BYTES", 600)
    assert_same_maps(joint_maps(True), joint_maps(True, budget=1 << 30))
    q, k = torch.randn(1, 2, 64, 8), torch.randn(1, 2, 16, 8)
    assert BlockProbabilities(q, k, torch.zeros(1, 2, 64), 0.3).chunk == 1
    assert BlockProbabilities(q, k, torch.zeros(1, 2, 64), 0.3, budget=1 << 30).chunk == 64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_chunked_logsumexp_equals_logsumexp(dtype):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 37, 8, generator=g).to(dtype), torch.randn(2, 3, 29, 8, generator=g).to(dtype)
    keep = torch.rand(2, 1, 37, 29, generator=g) > 0.3
    keep[0, 0, 5] = False  # a row with every key masked
    s = q.double() @ k.double().transpose(-1, -2) * 0.7
    additive = torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    for mask in (None, keep, additive):
        want = (s if mask is None else s.masked_fill(~keep, float("-inf"))).logsumexp(-1)
        for budget in (None, 300, 5000):
            got = chunked_logsumexp(q, k, 0.7, mask, budget)
            assert got.dtype == torch.float32
            assert torch.equal(got.isinf(), want.isinf())
            fin = want.isfinite()
            assert torch.allclose(got.double()[fin], want[fin], atol=1e-5)


def test_resize_is_separable_and_equals_the_dense_operator():
    def dense(src, dst):  # the 2-D operator as it was built before: every basis map resized
        n = src[0] * src[1]
        eye = torch.eye(n).view(n, 1, *src)
        if tuple(src) != tuple(dst):
            eye = F.interpolate(eye, size=dst, mode="bicubic", align_corners=False)
        return eye.reshape(n, -1).T

    g = torch.Generator().manual_seed(0)
    for src, dst in (((4, 4), (8, 8)), ((3, 5), (6, 9)), ((2, 2), (7, 5)), ((5, 3), (4, 2)), ((6, 4), (6, 8)),
                     ((8, 6), (8, 6))):
        op = dense(src, dst)  # (h*w, h_l*w_l)
        x = torch.randn(2, src[0] * src[1], 7, generator=g)
        torch.testing.assert_close(resize_columns(x, src, dst), torch.einsum("pq,bqk->bpk", op, x),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(resize_adjoint(src, dst, "cpu"), op.sum(0), rtol=1e-5, atol=1e-6)
        region = torch.rand(3, dst[0] * dst[1], generator=g)
        torch.testing.assert_close(resize_adjoint(src, dst, "cpu", region), region @ op, rtol=1e-5, atol=1e-6)
    assert _resize_axis(64, 64, "cpu") is None  # same size: no operator at all
    assert _resize_axis(64, 128, "cpu").shape == (128, 64)  # the largest held for a 128 x 128 latent: 32 KiB
    assert _resize_axis.cache_info().maxsize is not None


def flux_shapes(b: int, heads: int, d: int = 128):
    """Queries and keys of one joint call at FLUX Kontext 1024 x 1024 token counts (512 + 4096 + 1024)."""
    layout = JointLayout(512, 4096, 1024)
    n = layout.text + layout.generated + layout.reference
    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, heads, n, d, generator=g).to(torch.float16)
    k = torch.randn(b, heads, n, d, generator=g).to(torch.float16)
    return layout, q, k


def block_peak(layout, q, k, lse, budget, mask=None):
    """Peak temporaries (bytes) of FluxI2AMProcessor._capture on one call, and the accumulator's state."""
    acc = I2AMAccumulator((64, 64), TokenLayout(grid=(32, 32)), num_steps=1, levels=("ulam", "sram"))
    session = CaptureSession(acc, q.shape[0])
    proc = FluxI2AMProcessor(session, "layer", layout, budget=budget)
    out = torch.zeros(q.shape[0], q.shape[2], 1)  # only read by the output-space capture, off here
    acc.update_rows("layer", lambda rows: torch.zeros(q.shape[0], q.shape[1], rows.stop - rows.start, 1024),
                    [slice(0, 2048), slice(2048, 4096)], torch.zeros(q.shape[:2] + (4096,)), 1024, 0)  # the state
    with PeakTemporaries() as tracker:
        proc._capture(slice(0, q.shape[0]), q, k, mask, lse, out)
    return tracker, acc


@pytest.mark.parametrize("with_lse", [True, False])
def test_block_path_temporaries_stay_under_the_budget_at_flux_token_counts(with_lse):
    # Real token counts and head width, two heads to keep it quick on a CPU: the whole joint logits of
    # these rows would be 2 x 4096 x 5632 x 4 = 176 MiB, the block 32 MiB; a 4 MiB budget must hold.
    layout, q, k = flux_shapes(1, 2)
    gen = layout.blocks()[0]
    lse = None
    if with_lse:
        lse = torch.zeros(q.shape[:3])
        lse[:, :, gen] = chunked_logsumexp(q[:, :, gen], k, 128 ** -0.5)
    budget = 4 << 20
    tracker, acc = block_peak(layout, q, k, lse, budget)
    assert 0 < tracker.peak <= budget, tracker.peak
    print(f"FLUX token counts, 2 heads, lse {'given' if with_lse else 'chunked'}: peak temporaries "
          f"{tracker.peak / 2**20:.2f} MiB (largest {tracker.largest / 2**20:.2f} MiB), budget {budget / 2**20:.0f} MiB")
    # the default budget at the same shapes: one chunk of the block, never the whole joint row
    tracker, _ = block_peak(layout, q, k, lse, None)
    assert tracker.peak <= attention_module.CAPTURE_BUDGET_BYTES
    assert tracker.largest < 2 * 4096 * (512 + 4096 + 1024) * 4


def test_planned_chunks_fit_the_budget_at_flux_scale():
    # B = 8 rows, 24 heads of width 128 (shapes only, on the meta device): the block's row chunks and the
    # chunked log-sum-exp's blocks stay within 1 GiB by their own accounting.
    layout = JointLayout(512, 4096, 1024)
    b, heads, d = 8, 24, 128
    q = torch.empty(b, heads, layout.generated, d, device="meta", dtype=torch.float16)
    k = torch.empty(b, heads, layout.reference, d, device="meta", dtype=torch.float16)
    lse = torch.empty(b, heads, layout.generated, device="meta")
    block = BlockProbabilities(q, k, lse, d ** -0.5)
    budget = attention_module.CAPTURE_BUDGET_BYTES
    assert budget == 1 << 30
    assert block.fixed_bytes + block.chunk * block.row_bytes <= budget
    assert 1 < len(block.chunks()) and block.chunk * b * heads * layout.reference * 4 <= budget
    print(f"FLUX 1024x1024, B=8: block rows per chunk {block.chunk}, planned temporaries "
          f"{(block.fixed_bytes + block.chunk * block.row_bytes) / 2**20:.0f} MiB of {budget / 2**20:.0f} MiB "
          f"(whole joint logits {b * heads * 4096 * 5632 * 4 / 2**30:.1f} GiB)")
    assert math.prod(q.shape[:2]) * 4096 * 5632 * 4 > 8 * budget


@pytest.mark.parametrize("backend", ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"])
def test_cuda_kernel_calls_match_their_schemas(monkeypatch, backend):
    # The CUDA kernels cannot run here; on the meta device their calls are checked against the ops'
    # schemas and shape functions, with the dispatcher's choice forced.
    from torch.nn.attention import SDPBackend

    monkeypatch.setattr(attention_module, "_SDP_CHOICE", lambda *a, **k: int(getattr(SDPBackend, backend)))
    q, k, v = (torch.empty(2, 24, n, 128, device="meta", dtype=torch.float16) for n in (40, 70, 70))
    res = attention_module._cuda_attention(q, k, v, 128 ** -0.5, None)
    if backend == "MATH":
        assert res is None
        return
    out, lse = res
    assert out.shape == q.shape and out.dtype == q.dtype
    assert lse.shape == (2, 24, 40) and lse.dtype == torch.float32
    additive = torch.empty(2, 1, 40, 70, device="meta", dtype=torch.float16)
    res = attention_module._cuda_attention(q, k, v, 128 ** -0.5, additive)
    assert (res is None) == (backend != "EFFICIENT_ATTENTION")
    boolean = torch.empty(2, 1, 40, 70, device="meta", dtype=torch.bool)
    assert attention_module._cuda_attention(q, k, v, 128 ** -0.5, boolean) is None


def test_fused_attention_with_a_mask_is_the_public_function():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g) for n in (10, 7, 7))
    mask = torch.rand(2, 1, 10, 7, generator=g) > 0.2
    out, lse = fused_attention(q, k, v, 0.3, mask)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)) and lse is None


def test_sram_state_is_one_sum_for_the_layers_of_one_shape():
    model = tiny_flux()
    acc = I2AMAccumulator(GEN, TokenLayout(grid=REF), num_steps=1, levels=("ulam", "sram"))
    with capture_joint(model, CaptureSession(acc, 2), JointLayout(T, N_GEN, N_REF)) as layers:
        model(**inputs())
    assert len(layers) == 2
    first, second = acc.sr.values()
    assert first is second and first.shape == (2, N_GEN, N_REF)  # both blocks: 2 heads, 16 queries, 4 tokens
    per_layer_g = sum(t.numel() * 4 for t in acc.g.values())
    per_layer_r = sum(t.numel() * 4 for t in acc.r.values())
    assert acc.state_bytes() == per_layer_g + per_layer_r + first.numel() * 4
