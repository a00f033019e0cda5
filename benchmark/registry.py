"""One registry for every extension point (``docs/extending.md``).

* ``DATASET_FORMATS``: dataset loaders by ``dataset.format`` (info: the folder layout; each must define ``files(i)``);
* ``ADAPTERS``: model adapters by ``adapter`` name;
* ``SAMPLE_METRICS``: per-sample scores a job records (info: ``label``, ``direction``, ``kind``);
* ``SET_METRICS``: set-level metrics the report computes from stored features (same info);
* ``METHODS``: attribution methods of the method leaderboard (info: ``label``).

An entry is an object, or a ``"module:attribute"`` string imported on first ``get`` so that commands that
only read names (``validate``, ``ls``, ``report``) never import torch, diffusers or transformers.
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
        self._entries[name] = Entry(name, target, {**(old.info if old else {}), **info})

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
        return [self._entries[n] for n in self.names()]

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


DATASET_FORMATS: Registry = FormatRegistry("dataset format")
ADAPTERS: Registry = Registry("model adapter")
SAMPLE_METRICS: Registry = Registry("per-sample metric")
SET_METRICS: Registry = Registry("set metric")
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
for _name, _label, _unit, _needs in (("masked_psnr", "masked PSNR", "dB", ("target", "region_mask")),
                                     ("masked_ssim", "masked SSIM", None, ("target", "region_mask")),
                                     ("psnr", "PSNR", "dB", ("target",)), ("ssim", "SSIM", None, ("target",))):
    SAMPLE_METRICS.add(_name, f"benchmark.metrics.per_sample:{_name}", label=_label, direction="higher",
                       kind="quality", unit=_unit, needs=_needs)
SAMPLE_METRICS.add("lpips", None, label="LPIPS", direction="lower", kind="quality", needs=("target", "weights"))
# Covariates: the share of the image / reference inside its mask (confound diagnostics).
SAMPLE_METRICS.add("area_g", None, label="area(x_g)", kind="covariate")
SAMPLE_METRICS.add("area_r", None, label="area(x_r)", kind="covariate")
# Attribution methods of the method leaderboard (benchmark/methods/compare.py reads its labels from here).
METHODS.add("i2am", None, label="I2AM all heads", reads="g/layer_heads, r/layer_heads")
METHODS.add("i2am_top_k", None, label="I2AM top-k heads", reads="g/layer_heads; heads ranked on a calibration half")
METHODS.add("concept", None, label="ConceptAttention-style (output space)", reads="cg/concept, cr/concept",
            needs="joint attention")
METHODS.add("uniform", None, label="uniform map", reads="nothing: the baseline every method must beat")
METHODS.add("one_pass", None, label="I2AM one-pass", reads="maps of the one-pass protocol (docs/one_pass.md)")
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
