"""One registry for every extension point (``docs/extending.md``).

* ``DATASET_FORMATS``: dataset loaders by ``dataset.format`` (info: the folder layout; each must define
  ``from_config(root, dataset_section)`` and ``files(i)``);
* ``ADAPTERS``: model adapters by ``adapter`` name (:class:`benchmark.api.model.ModelAdapter`);
* ``SAMPLE_METRICS``: per-sample scores a job records (info: ``label``, ``direction``, ``kind``; a quality
  metric's target is ``(pred, target, mask) -> float`` and its ``needs`` say what the sample must have);
* ``SET_METRICS``: set-level metrics the report computes from stored features (info: ``label``, ``direction``,
  ``needs``; the target is ``(generated_feats, reference_feats, **settings) -> dict`` holding the value under the
  metric's name);
* ``METHODS``: attribution methods of the method leaderboard (info: ``label``, ``reads``; the target is a
  :data:`benchmark.methods.base.MethodFactory`).

An entry is an object, or a ``"module:attribute"`` string imported on first ``get`` so that commands that
only read names (``validate``, ``ls``, ``report``) never import torch, diffusers or transformers. Entries keep
their registration order (:meth:`Registry.ordered`): it is the order of the quality metrics in the tables and of
the methods in the method leaderboard.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    target: Any  # the object, or "module:attribute"
    info: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.info.get("label", self.name)

    @property
    def direction(self) -> str | None:
        return self.info.get("direction")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind, self._entries = kind, {}

    def add(self, name: str, target: Any, **info) -> None:
        """Register ``target`` (an object or ``"module:attribute"``) under ``name`` with its ``info``."""
        old = self._entries.get(name)
        if old is not None and not (isinstance(old.target, str) and not isinstance(target, str)):
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, target, self.checked_info(name, {**(old.info if old else {}), **info}))

    def checked_info(self, name: str, info: dict) -> dict:
        """``info`` as stored: a kind of registry checks (and completes) it here, so that an incomplete entry
        fails where it is registered, not in the job or report that first reads it."""
        return info

    def register(self, name: str, **info) -> Callable[[T], T]:
        """Decorator form of :meth:`add` (fills a lazily declared entry when its module is imported)."""

        def deco(obj: T) -> T:
            self.add(name, obj, **info)
            return obj

        return deco

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {sorted(self._entries)}"
            raise KeyError(f"unknown {self.kind} {name!r}{hint}")
        return self._entries[name]

    def get(self, name: str) -> T:
        e = self.entry(name)
        if isinstance(e.target, str):
            module, _, attr = e.target.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._entries[name] = Entry(name, obj, e.info)
            return obj
        return e.target

    def info(self, name: str) -> dict:
        return self.entry(name).info

    def label(self, name: str) -> str:
        return self._entries[name].label if name in self._entries else name

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """Entries by name."""
        return [self._entries[n] for n in self.names()]

    def ordered(self) -> list[Entry]:
        """Entries in registration order."""
        return list(self._entries.values())

    def snapshot(self) -> dict:
        """The entries as they are now, for :meth:`restore` (tests that register entries of their own)."""
        return dict(self._entries)

    def restore(self, snapshot: dict) -> None:
        self._entries = dict(snapshot)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


class FormatRegistry(Registry):
    """Dataset loaders, checked when resolved: a loader must define ``files(i)``, the files sample ``i`` reads by
    role, since their contents key its stored job (without it an image edited in place would reuse a stale job)."""

    def get(self, name: str):
        loader = super().get(name)
        if not callable(getattr(loader, "files", None)):
            raise TypeError(f"{self.kind} {name!r}: loader {getattr(loader, '__qualname__', loader)!r} defines no "
                            "files(i); dataset loaders must define files(i), the files sample i reads by role, "
                            "which key its stored job (docs/extending.md)")
        return loader


DIRECTIONS = ("higher", "lower")
SAMPLE_NEEDS = ("target", "region_mask", "weights")  # what a per-sample metric may need of a sample


def _direction(kind: str, name: str, info: dict) -> None:
    if info.get("direction") not in DIRECTIONS:
        raise ValueError(f"{kind} {name!r}: direction must be one of {list(DIRECTIONS)} (which way is better), "
                         f"got {info.get('direction')!r}")


class SampleMetricRegistry(Registry):
    """Per-sample metrics: ``kind`` is ``attribution``, ``quality`` or ``covariate``; scores of the first two have a
    ``direction``; a quality metric has ``needs``, what the sample must have for the job to compute it
    (default ``("target",)``: every quality metric compares the output with the ground truth)."""

    KINDS = ("attribution", "quality", "covariate")

    def checked_info(self, name: str, info: dict) -> dict:
        if info.get("kind") not in self.KINDS:
            raise ValueError(f"{self.kind} {name!r}: kind must be one of {list(self.KINDS)}, got {info.get('kind')!r}")
        if info["kind"] == "covariate":
            return info
        _direction(self.kind, name, info)
        if info["kind"] == "quality":
            needs = tuple(info.get("needs", ("target",)))
            unknown = [n for n in needs if n not in SAMPLE_NEEDS]
            if unknown or "target" not in needs:
                raise ValueError(f"{self.kind} {name!r}: needs must name what the sample must have, among "
                                 f"{list(SAMPLE_NEEDS)} and including 'target'; got {list(needs)}")
            info = {**info, "needs": needs}
        return info


class SetMetricRegistry(Registry):
    """Set metrics: a ``direction`` and ``needs`` (the stored job features they read: ``"inception"``)."""

    NEEDS = ("inception",)

    def checked_info(self, name: str, info: dict) -> dict:
        _direction(self.kind, name, info)
        if info.get("needs") not in self.NEEDS:
            raise ValueError(f"{self.kind} {name!r}: needs must be one of {list(self.NEEDS)} (the features a job "
                             f"stores in set_inputs.npz), got {info.get('needs')!r}")
        return info


DATASET_FORMATS: Registry = FormatRegistry("dataset format")
ADAPTERS: Registry = Registry("model adapter")
SAMPLE_METRICS: Registry = SampleMetricRegistry("per-sample metric")
SET_METRICS: Registry = SetMetricRegistry("set metric")
METHODS: Registry = Registry("attribution method")

for _name, _target in {
    "reference_unet": "benchmark.adapters.reference_unet:ReferenceUNetAdapter",
    "paint_by_example": "benchmark.adapters.paint_by_example:PaintByExampleAdapter",
    "generic_unet": "benchmark.adapters.generic_unet:GenericUNetAdapter",
    "ldm_unet": "benchmark.adapters.ldm_unet:LdmUNetAdapter",
    "flux_kontext": "benchmark.adapters.flux_kontext:FluxKontextAdapter",
    "reference_dit": "benchmark.adapters.reference_dit:ReferenceDiTAdapter",
}.items():
    ADAPTERS.add(_name, _target)

# A loader class with ``from_config(root, dataset_section)`` and ``files(i)``; docs/datasets.md has the layouts.
for _name, _target, _layout, _split_folder in (
    ("viton_hd", "benchmark.datasets.viton_hd:VitonHDDataset", "zalando-hd-resized/{split}/image, cloth, agnostic-v3.2, ...", False),
    ("cocoee", "benchmark.datasets.cocoee:CocoeeDataset", "test_bench/GT_3500, Ref_3500, Mask_bbox_3500", True),
    ("cufed5", "benchmark.datasets.cufed5:Cufed5Dataset", "CUFED5/XXX_0.png .. XXX_5.png", True),
):
    DATASET_FORMATS.add(_name, _target, layout=_layout, embedded_split_folder=_split_folder)

# Attribution scores (recorded per sample; IMACS is formed at report time from the stored terms).
for _name, _label in (("imacs_g", "IMACS_g"), ("imacs_r", "IMACS_r"), ("miou_g", "mIoU_g"), ("miou_r", "mIoU_r"),
                      ("ap_g", "AP_g"), ("ap_r", "AP_r"), ("pixel_acc_g", "pix.acc_g"), ("pixel_acc_r", "pix.acc_r")):
    SAMPLE_METRICS.add(_name, None, label=_label, direction="higher", kind="attribution")
# Quality of the output against the ground truth, computed by the job for every sample that has what the entry
# ``needs`` (functions in benchmark/metrics/per_sample.py). LPIPS comes with the set-metric inputs (its weights).
# Their registration order is their order in the tables; the first a task has is its primary quality metric.
for _name, _label, _unit, _needs in (("masked_psnr", "masked PSNR", "dB", ("target", "region_mask")),
                                     ("masked_ssim", "masked SSIM", None, ("target", "region_mask")),
                                     ("ssim", "SSIM", None, ("target",)), ("psnr", "PSNR", "dB", ("target",))):
    SAMPLE_METRICS.add(_name, f"benchmark.metrics.per_sample:{_name}", label=_label, direction="higher",
                       kind="quality", unit=_unit, needs=_needs)
SAMPLE_METRICS.add("lpips", None, label="LPIPS", direction="lower", kind="quality", needs=("target", "weights"))
# Covariates: the share of the image / reference inside its mask (confound diagnostics).
SAMPLE_METRICS.add("area_g", None, label="area(x_g)", kind="covariate")
SAMPLE_METRICS.add("area_r", None, label="area(x_r)", kind="covariate")
# Attribution methods of the method leaderboard, in its order (benchmark/methods/compare.py scores every one).
METHODS.add("i2am", "benchmark.methods.i2am:all_heads", label="I2AM all heads",
            reads="g/layer_heads, r/layer_heads")
METHODS.add("concept", "benchmark.methods.concept:output_space", label="ConceptAttention-style (output space)",
            reads="cg/concept, cr/concept (joint-attention models)")
METHODS.add("i2am_top_k", "benchmark.methods.i2am:top_k_heads", label="I2AM top-k heads",
            reads="g/layer_heads; heads ranked on a calibration half")
METHODS.add("uniform", "benchmark.methods.uniform:uniform", label="uniform map",
            reads="nothing: the baseline every method must beat")
METHODS.add("one_pass", "benchmark.methods.i2am:one_pass", label="I2AM one-pass",
            reads="maps of the one-pass protocol (docs/one_pass.md)")
SET_METRICS.add("fid", "benchmark.metrics:set_metric_values", label="FID", direction="lower", needs="inception")
SET_METRICS.add("kid", "benchmark.metrics:set_metric_values", label="KID", direction="lower", needs="inception")

def metric_label(name: str) -> str:
    """Display label of a per-sample or set metric (its name when unregistered)."""
    return SAMPLE_METRICS.label(name) if name in SAMPLE_METRICS else SET_METRICS.label(name)


def metric_direction(name: str) -> str | None:
    for reg in (SAMPLE_METRICS, SET_METRICS):
        if name in reg:
            return reg.entry(name).direction
    return None


def quality_metric_order() -> tuple[str, ...]:
    """The registered per-sample quality metrics in registration order: the one order of every table, the first a
    task has being its primary quality metric (docs/extending.md)."""
    return tuple(e.name for e in SAMPLE_METRICS.ordered() if e.info.get("kind") == "quality")
