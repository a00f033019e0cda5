"""The real-data path end to end: real-layout VITON-HD, COCOEE (no reference masks) and CUFED5 trees with bad
samples mixed in, tiny random models, synthetic metric weights in the real formats.

Three runs of ``python -m benchmark run`` (inline scheduler) share one module fixture:

* ``full``: every task, the weights present from the start (the jobs extract the metric inputs);
* ``bare``: COCOEE (it lists FID, KID and LPIPS) into a second output folder, the weights absent: the three are
  unavailable, with the paths looked at;
* ``refreshed``: the same config as ``bare`` after the weights are put back: nothing is generated again, the
  stored jobs' FID/KID/LPIPS inputs are recomputed from their PNGs.

FID/KID are checked against ``cleanfid.fid.compute_fid`` / ``compute_kid`` (mode ``clean``) on folders of the
stored ``generated.png`` files and of the reference-set images (the ground truth at evaluation size, written
here from the dataset's samples); LPIPS against ``lpips.LPIPS(net="alex")`` on the same pairs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import re
import shutil
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cleanfid.features
import lpips
import numpy as np
import pandas as pd
import pytest
import torch
import torch.hub
import yaml
from cleanfid import fid as cleanfid_fid
from PIL import Image

from benchmark.cli import main
from benchmark.config import REPO_ROOT, TaskConfig
from benchmark.scoring.figures import save_png, to_uint8
from benchmark.metrics import weights
from benchmark.models.mini import save_tiny_random_model
from benchmark.run.tasks import build_dataset

TESTS = Path(__file__).resolve().parent


def _load_helpers(relative: str, name: str):
    """A fixture module of another test folder as a plain module, for its builder functions (conftest files
    are not importable by name: every test folder has one)."""
    spec = importlib.util.spec_from_file_location(name, TESTS / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_metric_helpers = _load_helpers("metrics/conftest.py", "_real_layout_metric_helpers")
_dataset_helpers = _load_helpers("datasets/conftest.py", "_real_layout_dataset_helpers")
write_inception, write_alexnet = _metric_helpers.write_inception, _metric_helpers.write_alexnet
inject, save = _dataset_helpers._inject, _dataset_helpers._save

MODEL = "rand"
REFRESHED = "cocoee_real"  # the task of the runs without weights, then with them added
SHARD_SIZE = 3  # several jobs per task: the set metrics gather their features
INCEPTION, ALEXNET = "inception-2015-12-05.pt", "alexnet-owt-7be5be79.pth"
# Conditions of each dataset format's tiny model (as in tests/test_end_to_end.py).
CONDITIONS = {
    "viton_hd": [("masked_image", "image"), ("mask", "mask"), ("pose", "image")],
    "cocoee": [("masked_image", "image"), ("mask", "mask")],
    "cufed5": [("lr_up", "image")],
}


@dataclass(frozen=True)
class Bad:
    """A sample broken on purpose: its id, the file the error must name, words of the reason."""

    sample_id: str
    file: Path
    reason: str


@dataclass
class TaskTree:
    """One task of the run: its YAML, the model's format, the bad samples and the good ones (in dataset order)."""

    name: str
    yaml: Path
    format: str
    bad: list[Bad]
    good: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> set[str]:
        return {m.name for m in TaskConfig.load(self.yaml).metrics}


@dataclass
class Run:
    tasks: list[str]
    code: int
    stdout: str
    stderr: str
    out: Path
    lb: Path


# --- real-layout trees ------------------------------------------------------------------------------
def _picture(rng: np.random.Generator, h: int, w: int, cells: int = 6) -> np.ndarray:
    """(h, w, 3) uint8: smooth random colour fields (a coarse random grid, bicubic-upsampled), like a photo
    in that neighbouring pixels agree."""
    coarse = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8))
    return np.asarray(coarse.resize((w, h), Image.BICUBIC))


def _box(h: int, w: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[top:bottom, left:right] = 255
    return mask


def build_viton_hd(root: Path, rng: np.random.Generator, n: int = 7, h: int = 128,
                   w: int = 96) -> tuple[Path, list[Bad]]:
    """``zalando-hd-resized/test/...`` and ``test_pairs.txt`` as StableVITON reads them (JPEG photos, garments,
    agnostic images and densepose; PNG agnostic masks), at a quarter of the real 1024x768. One person's agnostic
    image is 8 rows taller than the photo."""
    top = root / "zalando-hd-resized"
    d = top / "test"
    persons = [f"{i:05d}_00.jpg" for i in range(n)]
    for i, person in enumerate(persons):
        photo = _picture(rng, h, w)
        region = _box(h, w, h // 4, w // 6, 3 * h // 4, 5 * w // 6)
        agnostic = np.where(region[..., None] > 0, 128, photo).astype(np.uint8)
        save(d / "image" / person, photo)
        save(d / "cloth" / person, _picture(rng, h, w))
        save(d / "cloth-mask" / person, _box(h, w, h // 8, w // 8, 7 * h // 8, 7 * w // 8))
        save(d / "agnostic-v3.2" / person, agnostic)
        save(d / "agnostic-mask" / f"{Path(person).stem}_mask.png", region)
        save(d / "image-densepose" / person, _picture(rng, h, w, cells=3))
    # Unpaired: each person wears the next person's garment.
    (top / "test_pairs.txt").write_text("".join(f"{p} {persons[(i + 1) % n]}\n" for i, p in enumerate(persons)))
    bad_file = d / "agnostic-v3.2" / persons[2]
    inject(bad_file, "mis-sized")
    return top, [Bad(Path(persons[2]).stem, bad_file, "differs from the person image")]


def build_cocoee(root: Path, rng: np.random.Generator, ids=(9, 25, 30, 42, 77, 101), size: int = 96,
                 ref: int = 40) -> tuple[Path, list[Bad]]:
    """Paint-by-Example's ``test_bench`` (GT, reference crops, box masks, ``id_list.npy``) without
    ``Ref_mask_3500``, as the real benchmark ships. One box mask covers the whole image; one reference PNG is
    truncated."""
    bench = root / "test_bench"
    names = [f"{i:012d}" for i in ids]
    for k, sid in enumerate(names):
        save(bench / "GT_3500" / f"{sid}_GT.png", _picture(rng, size, size))
        save(bench / "Ref_3500" / f"{sid}_ref.png", _picture(rng, ref, ref, cells=4))
        lo = size // 4 + k
        save(bench / "Mask_bbox_3500" / f"{sid}_mask.png", _box(size, size, lo, lo, size - lo // 2, size - lo))
    np.save(bench / "id_list.npy", np.asarray(ids))
    full, cut = bench / "Mask_bbox_3500" / f"{names[1]}_mask.png", bench / "Ref_3500" / f"{names[4]}_ref.png"
    inject(full, "full")
    inject(cut, "truncated")
    return root, [Bad(names[1], full, "mask is full"), Bad(names[4], cut, "truncated")]


def build_cufed5(root: Path, rng: np.random.Generator, n: int = 6, h: int = 66, w: int = 50,
                 ref: int = 40) -> tuple[Path, list[Bad]]:
    """``CUFED5/XXX_0.png`` (HR; not a multiple of 4, so the loader crops it) and ``XXX_1..5.png`` (references),
    no masks. One HR PNG is truncated."""
    folder = root / "CUFED5"
    for i in range(n):
        save(folder / f"{i:03d}_0.png", _picture(rng, h, w))
        for level in range(1, 6):
            save(folder / f"{i:03d}_{level}.png", _picture(rng, ref, ref, cells=4))
    cut = folder / "003_0.png"
    inject(cut, "truncated")
    return root, [Bad("003", cut, "truncated")]


def write_task(folder: Path, name: str, base: str, dataset: dict, **extra) -> Path:
    """A task YAML extending one of the repository's tasks (``base:`` as in ``configs/real_tasks``)."""
    path = folder / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"base": str(REPO_ROOT / "tasks" / base), "name": name,
                                    "dataset": dataset, **extra}))
    return path


def build_tasks(tmp: Path) -> list[TaskTree]:
    rng = np.random.default_rng(0)
    viton, viton_bad = build_viton_hd(tmp / "data" / "viton", rng)
    cocoee, cocoee_bad = build_cocoee(tmp / "data" / "cocoee", rng)
    cufed5, cufed5_bad = build_cufed5(tmp / "data" / "cufed5", rng)
    folder = tmp / "tasks"
    tasks = [
        TaskTree("viton_hd_real", write_task(folder, "viton_hd_real", "viton_hd/task.yaml",
                                             {"root": str(viton), "size": [64, 48]}), "viton_hd", viton_bad),
        TaskTree("viton_hd_real_unpaired", write_task(
            folder, "viton_hd_real_unpaired", "viton_hd/task.yaml",
            {"root": str(viton), "size": [64, 48], "pairing": "unpaired"},
            metrics=[{"name": "fid", "direction": "lower"}, {"name": "kid", "direction": "lower"}]),
            "viton_hd", viton_bad),
        TaskTree("cocoee_real", write_task(folder, "cocoee_real", "object_inpainting/task.yaml",
                                           {"root": str(cocoee), "size": [64, 64]}), "cocoee", cocoee_bad),
        TaskTree("cufed5_real", write_task(folder, "cufed5_real", "super_resolution/task.yaml",
                                           {"root": str(cufed5), "level": 1}), "cufed5", cufed5_bad),
    ]
    for t in tasks:
        bad = {b.sample_id for b in t.bad}
        t.good = [sid for sid in build_dataset(TaskConfig.load(t.yaml)).ids if sid not in bad]
    return tasks


def n_shards(task: TaskTree) -> int:
    """Jobs of one model on ``task`` (the run configs' shard_size is 3; bad samples are in shards too)."""
    return -(-(len(task.good) + len(task.bad)) // SHARD_SIZE)


def write_run_config(tmp: Path, name: str, tasks: list[TaskTree], models: dict[str, Path], weights_dir: Path) -> Path:
    cfg = {"name": name, "label": "tiny random model", "output_dir": str(tmp / name / "run"),
           "leaderboard_dir": str(tmp / name / "lb"), "device": "cpu", "batch_size": 2, "shard_size": SHARD_SIZE,
           "capture": {"time_groups": 2}, "scoring": {"n_boot": 50}, "metrics": {"weights_dir": str(weights_dir)},
           "tasks": [{"task": str(t.yaml), "models": [{"name": MODEL, "adapter": "reference_unet",
                                                        "path": str(models[t.format])}]} for t in tasks]}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(config: Path) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "--config", str(config), "--scheduler", "inline"])
    cfg = yaml.safe_load(config.read_text())
    tasks = [TaskConfig.load(t["task"]).name for t in cfg["tasks"]]
    return Run(tasks, code, out.getvalue(), err.getvalue(), Path(cfg["output_dir"]), Path(cfg["leaderboard_dir"]))


def _no_download(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"the real-layout run tried to download: args={args!r}")


@dataclass
class Bench:
    tmp: Path
    tasks: list[TaskTree]
    weights_dir: Path
    library_dirs: dict[str, Path]
    runs: dict[str, Run]

    def task(self, name: str) -> TaskTree:
        return next(t for t in self.tasks if t.name == name)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real_layout")
    weights_dir = tmp / "weights"  # the run config's metrics.weights_dir
    library = {"cleanfid": tmp / "cleanfid", "torch_home": tmp / "torch_home", "spare": tmp / "spare_weights"}
    for d in (weights_dir, *library.values()):
        d.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I2AM_CACHE_DIR", str(tmp / "cache"))  # reference stats and file digests: never ~/.cache
        mp.delenv(weights.WEIGHTS_DIR_ENV, raising=False)
        mp.setenv("TORCH_HOME", str(library["torch_home"]))
        # The libraries' own places (clean-fid's hard-coded /tmp, $TORCH_HOME) are temporary folders that stay
        # empty while the harness runs: only metrics.weights_dir decides what the runs find.
        mp.setattr(weights, "cleanfid_dir", lambda: library["cleanfid"])
        real_w = cleanfid.features.InceptionV3W
        mp.setattr(cleanfid.features, "InceptionV3W",
                   lambda path, download=True, resize_inside=False: real_w(str(library["cleanfid"]), download,
                                                                           resize_inside))
        mp.setattr(urllib.request, "urlopen", _no_download)
        mp.setattr(torch.hub, "download_url_to_file", _no_download)

        tasks = build_tasks(tmp)
        models = {}
        for fmt, conditions in CONDITIONS.items():
            models[fmt] = tmp / "models" / fmt
            save_tiny_random_model(models[fmt], conditions, num_inference_steps=2)
        spare = {INCEPTION: write_inception(library["spare"] / INCEPTION),
                 ALEXNET: write_alexnet(library["spare"] / ALEXNET)}

        def put_weights():
            for name, path in spare.items():
                shutil.copy2(path, weights_dir / name)

        runs = {}
        put_weights()
        runs["full"] = run_cli(write_run_config(tmp, "full", tasks, models, weights_dir))
        for name in spare:
            (weights_dir / name).unlink()
        # COCOEE alone lists FID, KID and LPIPS: enough for the refresh path, and one FID fewer to compute.
        bare = write_run_config(tmp, "bare", [t for t in tasks if t.name == REFRESHED], models, weights_dir)
        runs["bare"] = run_cli(bare)
        # The refreshed run writes the same leaderboard folder: keep the bare one's pages.
        runs["bare"].lb = shutil.copytree(runs["bare"].lb, tmp / "bare" / "lb_without_weights")
        put_weights()
        runs["refreshed"] = run_cli(bare)
        # Only now the libraries' own places get the same files, for the reference computations.
        shutil.copy2(spare[INCEPTION], library["cleanfid"] / INCEPTION)
        (library["torch_home"] / "hub" / "checkpoints").mkdir(parents=True)
        shutil.copy2(spare[ALEXNET], library["torch_home"] / "hub" / "checkpoints" / ALEXNET)
        yield Bench(tmp, tasks, weights_dir, library, runs)


# --- what the libraries say on the stored files ------------------------------------------------------
def stored_outputs(run: Run, task: str) -> dict[str, tuple[int, Path]]:
    """sample id -> (dataset index, stored ``generated.png``) of every sample the run's store holds."""
    out = {}
    for result in (run.out / "store").glob(f"{task}-v*/{MODEL}-*/*/shard-*/result.json"):
        record = json.loads(result.read_text())
        for s in record["samples"]:
            out[s["sample_id"]] = (s["index"], result.parent / "samples" / s["sample_id"] / "generated.png")
    return dict(sorted(out.items(), key=lambda kv: kv[1][0]))


def reference_folders(bench: Bench, run_name: str, task: TaskTree) -> tuple[Path, Path]:
    """Folders of the stored generated PNGs and of the ground truth at evaluation size (the task's FID/KID
    reference set: the photo in both VITON-HD pairings, the target otherwise), same file names, dataset order."""
    run, dataset = bench.runs[run_name], build_dataset(TaskConfig.load(task.yaml))
    root = bench.tmp / "library" / run_name / task.name
    gen_dir, ref_dir = root / "generated", root / "reference"
    if not gen_dir.is_dir():
        gen_dir.mkdir(parents=True)
        for sid, (index, png) in stored_outputs(run, task.name).items():
            name = f"{index:03d}_{sid}.png"  # clean-fid reads a folder in sorted order: the dataset's order
            shutil.copy2(png, gen_dir / name)
            sample = dataset[index]
            save_png(to_uint8(sample.meta.get("photo", sample.target)), ref_dir / name)
    return gen_dir, ref_dir


def cleanfid_values(gen_dir: Path, ref_dir: Path) -> tuple[float, float]:
    """(FID, KID) of clean-fid, mode ``clean``: the steps of its ``compute_fid`` / ``compute_kid`` on two folders
    (its Inception extractor, its folder features at its default batch size of 32, its ``frechet_distance`` and
    ``kernel_distance``), each folder's features computed once for both."""
    device = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cleanfid_fid.build_feature_extractor("clean", device, use_dataparallel=False)
        gen, ref = (cleanfid_fid.get_folder_features(str(d), model, num_workers=0, batch_size=32, device=device,
                                                     mode="clean", verbose=False) for d in (gen_dir, ref_dir))
        fid = cleanfid_fid.frechet_distance(np.mean(gen, axis=0), np.cov(gen, rowvar=False),
                                            np.mean(ref, axis=0), np.cov(ref, rowvar=False))
        # The subset draws of the harness (seed 0): with subset size n every draw is a permutation of the set,
        # and float32 sums depend on the order.
        np.random.seed(0)
        kid = cleanfid_fid.kernel_distance(gen, ref)
    return float(fid), kid


def lpips_values(gen_dir: Path, ref_dir: Path) -> dict[str, float]:
    """sample id -> ``lpips.LPIPS(net="alex")`` of the stored PNG against its ground truth PNG."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(net="alex", verbose=False)
    out = {}
    with torch.no_grad():
        for png in sorted(gen_dir.glob("*.png")):
            a, b = (lpips.im2tensor(np.asarray(Image.open(p).convert("RGB"))) for p in (png, ref_dir / png.name))
            out[png.stem.split("_", 1)[1]] = float(net(a, b))
    return out


def _digest(*folders: Path) -> str:
    h = hashlib.sha256()
    for folder in folders:
        for p in sorted(folder.iterdir()):
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def library(bench):
    """Per (run, task): clean-fid's (FID, KID) where the task lists them, lpips per sample where it lists LPIPS.
    Remembered by the bytes of the two folders: the libraries' results are functions of the files alone."""
    cache = {}

    def get(run: str, task: str) -> dict:
        t = bench.task(task)
        gen_dir, ref_dir = reference_folders(bench, run, t)
        key = (task, _digest(gen_dir, ref_dir))
        if key not in cache:
            values = {}
            if "fid" in t.metrics:
                values["fid"], values["kid"] = cleanfid_values(gen_dir, ref_dir)
            if "lpips" in t.metrics:
                values["lpips"] = lpips_values(gen_dir, ref_dir)
            cache[key] = values
        return cache[key]

    return get


def table(run: Run, task: str) -> pd.Series:
    frame = pd.read_csv(run.lb / f"{task}.csv")
    assert list(frame.model) == [MODEL]
    return frame.iloc[0]


def page(run: Run, task: str) -> str:
    return (run.lb / f"{task}.md").read_text()


# --- the tests -----------------------------------------------------------------------------------------
def test_every_run_exits_zero_and_writes_every_page(bench):
    for name, run in bench.runs.items():
        assert run.code == 0, f"run {name} exited {run.code}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        for task in run.tasks:
            assert (run.lb / f"{task}.md").is_file() and (run.lb / f"{task}.csv").is_file(), (name, task)
        assert (run.lb / "README.md").is_file()
        assert json.loads((run.out / "run_summary.json").read_text())["failed"] == []


def test_bad_samples_are_named_with_their_file_counted_and_left_out(bench):
    run = bench.runs["full"]
    samples = pd.read_csv(run.out / "results" / "samples.csv", dtype={"sample_id": str})
    overview = (run.lb / "README.md").read_text()
    for t in bench.tasks:
        row, text = table(run, t.name), page(run, t.name)
        failures = text[text.index("## Failures"):]
        for bad in t.bad:
            line = next((ln for ln in failures.splitlines() if f"| {bad.sample_id} |" in ln), None)
            assert line is not None, f"{t.name}: {bad.sample_id} not in the failures section"
            assert f"`{bad.file}`" in line and bad.reason in line, line
        assert row["failed_samples"] == len(t.bad) and row["failed_jobs"] == 0
        assert row["n"] == len(t.good)
        stored = set(samples[samples.task == t.name].sample_id)
        assert stored == set(t.good), t.name
        assert f"| {t.name} | 1 | {len(t.good)} | {len(t.bad)} |" in overview


def test_fid_and_kid_equal_clean_fid_on_the_stored_pngs(bench, library):
    run = bench.runs["full"]
    for t in bench.tasks:
        if "fid" not in t.metrics:
            continue
        expected, row = library("full", t.name), table(run, t.name)
        assert expected["fid"] > 0 and expected["kid"] != 0
        assert row["fid"] == pytest.approx(expected["fid"], rel=1e-5), t.name
        assert row["kid"] == pytest.approx(1000 * expected["kid"], rel=1e-5), t.name  # KID x1000 by default
        text = page(run, t.name)
        assert "clean-fid" in text and "mode clean" in text and "KID x1000" in text


def test_lpips_equals_the_lpips_library_on_the_same_pairs(bench, library):
    run = bench.runs["full"]
    samples = pd.read_csv(run.out / "results" / "samples.csv", dtype={"sample_id": str})
    checked = 0
    for t in bench.tasks:
        if "lpips" not in t.metrics:
            continue
        expected = library("full", t.name)["lpips"]
        assert sorted(expected) == sorted(t.good)
        rows = samples[(samples.task == t.name) & (samples.metric == "lpips")].set_index("sample_id")["value"]
        for sid, value in expected.items():
            assert rows[sid] == pytest.approx(value, rel=1e-5), (t.name, sid)
        assert table(run, t.name)["lpips"] == pytest.approx(np.mean(list(expected.values())), rel=1e-5)
        checked += 1
    assert checked == 3  # VITON-HD paired, COCOEE, CUFED5


def test_cocoee_without_reference_masks_reports_imacs_r_not_applicable(bench):
    run = bench.runs["full"]
    samples = pd.read_csv(run.out / "results" / "samples.csv", dtype={"sample_id": str})
    r = samples[(samples.task == "cocoee_real") & (samples.metric == "imacs_r")]
    assert len(r) == len(bench.task("cocoee_real").good)
    assert r["value"].isna().all() and (r["note"] == "no reference mask").all()
    g = samples[(samples.task == "cocoee_real") & (samples.metric == "imacs_g")]
    assert g["value"].notna().all()
    text = page(run, "cocoee_real")
    assert re.search(r"IMACS_r\b[^\n]*: no reference mask", text)
    header = next(ln for ln in text.splitlines() if ln.startswith("| model |"))
    cells = next(ln for ln in text.splitlines() if ln.startswith(f"| {MODEL} |")).split(" | ")
    assert cells[header.split(" | ").index("IMACS_r ↑")] == "n/a"


def test_cufed5_without_masks_runs_end_to_end(bench):
    run = bench.runs["full"]
    t = bench.task("cufed5_real")
    samples = pd.read_csv(run.out / "results" / "samples.csv", dtype={"sample_id": str})
    s = samples[samples.task == t.name]
    assert set(s.sample_id) == set(t.good)
    for metric in ("psnr", "ssim", "lpips"):
        assert s[s.metric == metric]["value"].notna().sum() == len(t.good), metric
    imacs = s[s.metric.isin(["imacs_g", "imacs_r"])]
    assert imacs["value"].isna().all()
    assert set(imacs["note"]) == {"no region mask", "no reference mask"}
    row = table(run, t.name)
    assert np.isfinite([row["psnr"], row["ssim"], row["lpips"]]).all()
    # Each generated image has the HR crop's size (66x50 cropped to a multiple of 4).
    for _, png in stored_outputs(run, t.name).values():
        assert Image.open(png).size == (48, 64)


def test_analyses_never_crash_and_say_why_a_correlation_is_not_applicable(bench):
    run = bench.runs["full"]
    corr = pd.read_csv(run.out / "results" / "correlations.csv")
    # One model per task: the between-models correlation has one point, n/a with the reason.
    between = corr[corr.scope == "between models"]
    assert set(between.task) == {"viton_hd_real", "cocoee_real"}
    assert between["statistic"].isna().all() and between["note"].str.contains("fewer than 3 complete pairs").all()
    # A score without a single complete pair (COCOEE's IMACS_r, both CUFED5 sides) yields no number anywhere.
    assert corr[(corr.task == "cocoee_real") & (corr.x == "imacs_r")]["statistic"].notna().sum() == 0
    assert corr[corr.task == "cufed5_real"]["statistic"].notna().sum() == 0
    # VITON-HD's six complete pairs reach the held-out sweep; its halves of 3 give numbers or say why not.
    sweep = pd.read_csv(run.out / "results" / "sweep.csv")
    assert set(sweep.task) == {"viton_hd_real"} and set(sweep.side) == {"g", "r"}
    chosen = sweep[sweep.chosen]
    assert len(chosen) == 2 and (chosen.n_held_out == 3).all()
    assert (chosen.held_out.notna() | chosen.held_out_note.fillna("").str.len().gt(0)).all()
    assert (run.lb / "figures" / "viton_hd_real" / "sweep_imacs_g.png").is_file()


def test_without_weights_fid_kid_lpips_are_unavailable_with_the_paths(bench):
    run = bench.runs["bare"]
    n_jobs = n_shards(bench.task(REFRESHED))
    assert f"jobs: {n_jobs} (0 already stored, {n_jobs} run, 0 failed)" in run.stdout
    row, text = table(run, REFRESHED), page(run, REFRESHED)
    assert np.isnan(row["fid"]) and np.isnan(row["kid"])
    assert "unavailable¹" in text
    for path in (bench.weights_dir / INCEPTION, bench.library_dirs["cleanfid"] / INCEPTION):
        assert str(path) in text, path
    assert "lpips" not in row or np.isnan(row["lpips"])
    for path in (bench.weights_dir / ALEXNET, bench.library_dirs["torch_home"] / "hub" / "checkpoints" / ALEXNET):
        assert str(path) in text, path
    assert row["n"] == len(bench.task(REFRESHED).good)  # the rest of the run is there


def test_weights_added_later_refresh_the_stored_jobs_without_generating(bench, library):
    run, t = bench.runs["refreshed"], bench.task(REFRESHED)
    n_jobs = n_shards(t)
    assert f"jobs: {n_jobs} ({n_jobs} already stored, 0 run, 0 failed)" in run.stdout
    refreshed = re.search(r"FID/KID/LPIPS inputs of (\d+) stored job\(s\) recomputed", run.stdout)
    assert refreshed and int(refreshed.group(1)) == n_jobs, run.stdout[-2000:]
    expected, row = library("refreshed", t.name), table(run, t.name)
    assert row["fid"] == pytest.approx(expected["fid"], rel=1e-5)
    assert row["kid"] == pytest.approx(1000 * expected["kid"], rel=1e-5)
    assert row["lpips"] == pytest.approx(np.mean(list(expected["lpips"].values())), rel=1e-5)
    assert "unavailable" not in page(run, t.name)
    # Nothing was written outside the temporary folders: the reference statistics went to $I2AM_CACHE_DIR.
    assert any((bench.tmp / "cache" / "ref_stats").glob("*.npz"))


def test_the_shipped_real_task_configs_load():
    """``configs/real_tasks/*.yaml`` are what a user copies to point the harness at real data; each must parse
    (``viton_hd_unpaired.yaml`` extends a task that itself has a ``base:``)."""
    shipped = sorted((REPO_ROOT / "configs" / "real_tasks").glob("*.yaml"))
    assert shipped
    for path in shipped:
        task = TaskConfig.load(path)
        assert task.dataset.root.startswith("/path/to/"), path  # the placeholder a user replaces
    unpaired = TaskConfig.load(REPO_ROOT / "configs" / "real_tasks" / "viton_hd_unpaired.yaml")
    assert unpaired.dataset.pairing == "unpaired" and [m.name for m in unpaired.metrics] == ["fid", "kid"]
