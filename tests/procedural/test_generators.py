"""Properties every procedural generator shares: determinism, disjoint splits, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchmark.procedural import GENERATORS, generate_viton_hd

TINY = {"viton_hd": {"size": (32, 24)}, "cocoee": {"size": 32}, "cufed5": {"size": 32}}
# The file whose content depends on every random draw of a sample, per generator.
MAIN_IMAGE = {"viton_hd": "/image/", "cocoee": "/GT_3500/", "cufed5": "_0.png"}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_gives_byte_identical_trees_and_another_seed_differs(name, tmp_path, tree) -> None:
    gen, kw = GENERATORS[name], TINY[name]
    a = tree(gen(tmp_path / "a", n_train=2, n_test=3, seed=7, **kw))
    b = tree(gen(tmp_path / "b", n_train=2, n_test=3, seed=7, **kw))
    c = tree(gen(tmp_path / "c", n_train=2, n_test=3, seed=8, **kw))
    assert a and a.keys() == b.keys() == c.keys()
    assert a == b
    main = [k for k in a if MAIN_IMAGE[name] in k]
    assert len(main) == 5
    assert all(a[k] != c[k] for k in main), "every main image must change with the seed"
    same = sum(a[k] == c[k] for k in a)
    assert same < len(a) / 2, f"{same}/{len(a)} files identical across seeds"


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_no_temporary_files_left(name, tmp_path) -> None:
    root = GENERATORS[name](tmp_path / name, n_train=1, n_test=2, seed=0, **TINY[name])
    assert not [p for p in root.rglob("*.tmp")]


def test_viton_generation_is_fast(tmp_path) -> None:
    """Under 10 s per 1000 samples (measured at the default 64x48; best of two to ride out a busy CPU)."""
    n = 40
    best = float("inf")
    for rep in range(2):
        t0 = time.perf_counter()
        generate_viton_hd(tmp_path / str(rep), n_train=n - 8, n_test=8, seed=rep)
        best = min(best, time.perf_counter() - t0)
    per_1000 = best / n * 1000
    assert per_1000 < 10.0, f"{per_1000:.1f} s per 1000 samples"


def test_split_ids_never_overlap(tmp_path) -> None:
    from benchmark.procedural import generate_cocoee, generate_cufed5

    v = generate_viton_hd(tmp_path / "v", n_train=3, n_test=3, seed=0, size=(32, 24))
    vn = {s: {p.stem for p in (v / s / "image").iterdir()} for s in ("train", "test")}
    c = generate_cocoee(tmp_path / "c", n_train=3, n_test=3, seed=0, size=32)
    cn = {s: set(np.load(c / s / "test_bench" / "id_list.npy").tolist()) for s in ("train", "test")}
    f = generate_cufed5(tmp_path / "f", n_train=3, n_test=3, seed=0, size=32)
    fn = {s: {p.name[:-6] for p in (f / s / "CUFED5").glob("*_0.png")} for s in ("train", "test")}
    for names in (vn, cn, fn):
        assert len(names["train"]) == len(names["test"]) == 3
        assert not names["train"] & names["test"]
