"""Joint-attention (FLUX-style DiT) capture and ConceptAttention-style output-space maps."""

import torch
from diffusers import FluxTransformer2DModel
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import _get_qkv_projections

from benchmark.capture import I2AMAccumulator, TokenLayout
from benchmark.capture.joint_capture import JointLayout, OutputSpaceAccumulator, capture_joint
from benchmark.capture.session import CaptureSession

from helpers import Recorder, assert_maps_close

T, GEN, REF = 3, (4, 4), (2, 2)  # text tokens, generated grid, reference grid
N_GEN, N_REF = GEN[0] * GEN[1], REF[0] * REF[1]


def tiny_flux():
    torch.manual_seed(0)
    return FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
                                  num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8,
                                  axes_dims_rope=(2, 2, 4)).eval()


def inputs(b=2):
    g = torch.Generator().manual_seed(1)
    ids = [(0, y, x) for y in range(GEN[0]) for x in range(GEN[1])] + [(1, y, x) for y in range(REF[0]) for x in range(REF[1])]
    return dict(hidden_states=torch.randn(b, N_GEN + N_REF, 4, generator=g) * 2,
                encoder_hidden_states=torch.randn(b, T, 16, generator=g),
                pooled_projections=torch.randn(b, 8, generator=g), timestep=torch.full((b,), 0.5),
                img_ids=torch.tensor(ids, dtype=torch.float32), txt_ids=torch.zeros(T, 3))


def test_joint_capture_leaves_output_unchanged_and_fills_maps():
    model = tiny_flux()
    x = inputs()
    plain = model(**x).sample
    acc = I2AMAccumulator(GEN, TokenLayout(grid=REF), num_steps=1)
    concept = OutputSpaceAccumulator(num_steps=1)
    with capture_joint(model, CaptureSession(acc, 2), JointLayout(T, N_GEN, N_REF), concept) as layers:
        captured = model(**x).sample
    assert len(layers) == 2  # one dual-stream and one single-stream block
    assert (plain - captured).abs().max() < 1e-5
    assert "FluxI2AM" not in str(model.attn_processors)
    g, r = acc.generated_maps()["ulam"], acc.reference_maps()["ulam"]
    assert g.shape == (2, *GEN) and r.shape == (2, *REF)
    assert g.flatten(1).std(1).min() > 0 and r.flatten(1).std(1).min() > 0
    ref_region = torch.zeros(2, N_REF)
    ref_region[:, :2] = 1
    cmap = concept.generated_map(ref_region)
    assert cmap.shape == (2, N_GEN) and cmap.std(1).min() > 0  # non-constant output-space map
    assert torch.allclose(concept.volume.sum(-1), torch.full((2, N_GEN), 2.0), atol=1e-5)  # 2 layers, rows sum to 1


def test_joint_capture_equals_brute_force_block():
    model = tiny_flux()
    x = inputs()
    rec = Recorder(1)
    acc = I2AMAccumulator(GEN, TokenLayout(grid=REF), num_steps=1)
    block = model.transformer_blocks[0]
    seen = {}

    def grab(module, args, kwargs):
        seen["hidden"], seen["encoder"] = kwargs["hidden_states"], kwargs["encoder_hidden_states"]
        seen["rope"] = kwargs["image_rotary_emb"]

    handle = block.attn.register_forward_pre_hook(grab, with_kwargs=True)
    for sink in (rec, acc):
        with capture_joint(model, CaptureSession(sink, 2), JointLayout(T, N_GEN, N_REF)):
            model(**x)
    handle.remove()
    layer, _, probs, lse = next(c for c in rec.calls if c[0].startswith("transformer_blocks.0"))
    # brute force from diffusers' own projections, norms and rotary embedding
    attn = block.attn
    q, k, v, eq, ek, ev = _get_qkv_projections(attn, seen["hidden"], seen["encoder"])
    q, k = attn.norm_q(q.unflatten(-1, (-1, 8))), attn.norm_k(k.unflatten(-1, (-1, 8)))
    eq, ek = attn.norm_added_q(eq.unflatten(-1, (-1, 8))), attn.norm_added_k(ek.unflatten(-1, (-1, 8)))
    q, k = torch.cat([eq, q], 1), torch.cat([ek, k], 1)
    q, k = apply_rotary_emb(q, seen["rope"], sequence_dim=1), apply_rotary_emb(k, seen["rope"], sequence_dim=1)
    full = torch.einsum("bshd,bthd->bhst", q.double(), k.double()) / 8**0.5
    gen, ref = slice(T, T + N_GEN), slice(T + N_GEN, T + N_GEN + N_REF)
    # key-axis probabilities of the FULL softmax, the reference block cut out after it
    assert torch.allclose(probs.double(), full.softmax(-1)[:, :, gen, ref], atol=1e-6)
    assert torch.allclose(lse.double(), full.logsumexp(-1)[:, :, gen], atol=1e-5)
    # generated side: softmax of the block's logits over the generated queries, mean over reference tokens
    expected_g = full[:, :, gen, ref].softmax(2).mean(-1)  # (B, H, G)
    assert_maps_close(acc.g[layer][:, 0], expected_g)
    # reference side: the block's key-axis probabilities averaged over generated positions
    assert_maps_close(acc.r[layer][:, 0], full.softmax(-1)[:, :, gen, ref].mean(2))
