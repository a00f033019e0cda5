"""The report's analysis cache (:mod:`benchmark.report.memo`): entries are data that read back exactly, anything
else at an entry's path is recomputed without being unpickled, and a change of the computing code misses."""

from __future__ import annotations

import importlib
import io
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.report import build_report, memo
from benchmark.run.runner import execute

sys.path.insert(0, str(Path(__file__).parents[1] / "runner"))  # the runner tests' smoke config and tiny model
from runner_helpers import make_model, smoke_config  # noqa: E402


def _frames() -> dict[str, pd.DataFrame]:
    """Frames with the dtypes the report caches: pandas ``str`` columns with NaN, float, int, bool, object."""
    analysis = pd.DataFrame({
        "task": ["viton_hd", "viton_hd", "viton_hd"],
        "x": ["imacs_g", "imacs_r", "imacs_g"],
        "model": ["rand", np.nan, ""],  # a missing and an empty string
        "statistic": [0.25, np.nan, -0.0],
        "p_value": [1e-300, np.inf, 1 / 3],
        "n": np.array([8, 0, 3], dtype=np.int64),
        "chosen": [True, False, True],
        "note": ["", "fewer than 3 complete pairs", ""],
    })
    objects = pd.DataFrame({"o": np.array([None, "", 1, 2.0, np.float64(0.5), True, np.nan], dtype=object),
                            "i32": np.arange(7, dtype=np.int32)}, index=pd.Index(list("gfedcba"), name="id"))
    return {"analysis": analysis, "objects": objects,
            "columns_reordered": analysis[["n", "note", "task", "statistic"]].iloc[[2, 0]],
            "no_rows": pd.DataFrame(columns=["task", "model", "method", "sample_id", "metric", "value"]),
            "empty": pd.DataFrame()}


def _methods_result():
    """The shape of :func:`benchmark.methods.compare.compare_methods`' result: a frame and example maps."""
    per_sample = pd.DataFrame([{"task": "viton_hd", "model": "rand", "method": m, "sample_id": "000004",
                                "metric": "imacs_g", "value": v} for m, v in (("I2AM all heads", 0.5),
                                                                             ("uniform map", np.nan))],
                              columns=["task", "model", "method", "sample_id", "metric", "value"])
    maps = {"I2AM all heads": torch.rand(16, 12), "I2AM top-7 heads (supervised)": torch.rand(16, 12).double(),
            "uniform map": None}
    return per_sample, {("viton_hd", "rand"): maps}


def assert_same(a, b):
    """``a`` and ``b`` equal in value and in type all the way down (frames: dtypes, index, column order)."""
    assert type(a) is type(b)
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, check_dtype=True, check_index_type=True,
                                      check_column_type=True, check_names=True)
        assert type(a.index) is type(b.index) and type(a.columns) is type(b.columns)
        assert a.to_csv() == b.to_csv()
        for col in a.columns[a.dtypes == object]:
            assert [(type(x), repr(x)) for x in a[col]] == [(type(x), repr(x)) for x in b[col]]
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b or (a != a and b != b)


class Counter:
    """A compute function that counts its calls."""

    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value


def _compute(counter: Counter):
    return counter()


@pytest.mark.parametrize("value", [*_frames().values(), _methods_result(),
                                   (np.array([[1.5, np.nan]]), np.int64(3), np.float32(0.25), None, "", [1, 2.0]),
                                   ], ids=[*_frames(), "methods", "mixed"])
def test_an_entry_reads_back_exactly(tmp_path, value):
    counter = Counter(value)
    first = memo.cached(tmp_path, "entry", "k", _compute, counter)
    again = memo.cached(tmp_path, "entry", "k", _compute, counter)
    assert counter.calls == 1 and first is value
    assert_same(again, value)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]


class _Marker:
    """Unpickling this creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _bad_entries(marker) -> dict[str, bytes]:
    """Bytes an entry's path may hold that are not an entry: none of them may be unpickled or trusted."""
    def npz(**arrays) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def tree(node) -> np.ndarray:
        return np.frombuffer(json.dumps(node).encode(), dtype=np.uint8)

    return {"garbage": b"\x00not an entry",
            "pickle": pickle.dumps(_Marker(marker)),
            "npz with a pickled member": npz(tree=np.array([_Marker(marker)], dtype=object)),
            "tree of another shape": npz(tree=tree([1, 2])),
            "frame with a missing array": npz(tree=tree({"frame": {"index": {"range": [0, 2, 1], "name": None},
                                                                   "columns": {"range": [0, 1, 1], "name": None},
                                                                   "data": [{"array": "0"}], "attrs": {"dict": []}}}))}


def test_anything_else_at_an_entry_path_is_recomputed_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    value = _frames()["analysis"]
    counter = Counter(value)
    memo.cached(tmp_path / "cache", "entry", "k", _compute, counter)
    (path,) = (tmp_path / "cache").iterdir()
    for label, data in _bad_entries(marker).items():
        path.write_bytes(data)
        assert_same(memo.cached(tmp_path / "cache", "entry", "k", _compute, counter), value)
        assert_same(memo.load(path), value)  # replaced by a good entry
        assert not marker.exists(), label
    assert counter.calls == 1 + len(_bad_entries(marker))


def test_digest_of_a_frame_sees_every_cell_its_columns_and_index():
    f = pd.DataFrame({"model": ["a", "b"] * 500, "value": np.arange(1000) / 7})
    assert memo.digest(f) == memo.digest(f.copy())
    for changed in (f.assign(value=f.value.where(f.index != 999, 0.5)), f.rename(columns={"value": "v"}),
                    f.set_axis(f.index + 1), f.assign(value=f.value.astype("float32")),
                    f.assign(model=[["x"]] * 1000)):  # the last holds lists: hashed as CSV
        assert memo.digest(changed) != memo.digest(f)


def test_digest_sees_every_element_of_a_long_array():
    a = np.arange(2000)
    b = a.copy()
    b[1000] = -1
    assert memo.digest({"units": a}) != memo.digest({"units": b})
    assert memo.digest({"units": a}) == memo.digest({"units": a.copy()})


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A temporary package ``memo_pkg`` on ``sys.path``: ``compute`` imports from ``helper`` (relatively), which
    imports ``deep`` inside a function; ``unrelated`` and the package itself are imported by name by nobody.
    Removed from ``sys.modules`` afterwards."""
    root = tmp_path / "memo_pkg"
    root.mkdir()
    files = {"__init__.py": "",
             "compute.py": "import numpy\nfrom .helper import later\n\ndef compute(counter):\n    return counter()\n",
             "helper.py": "def later():\n    from memo_pkg.deep import VALUE\n    return VALUE\n",
             "deep.py": "VALUE = 1\n",
             "unrelated.py": "VALUE = 1\n"}
    for name, text in files.items():
        (root / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    memo.code_digest.cache_clear()
    yield root
    for name in [m for m in sys.modules if m == "memo_pkg" or m.startswith("memo_pkg.")]:
        del sys.modules[name]
    memo.code_digest.cache_clear()


def test_code_digest_follows_the_package_imports_transitively(package):
    before = memo.code_digest("memo_pkg.compute")
    assert memo.code_digest("memo_pkg.compute") == before  # once per process
    for name in ("unrelated.py", "__init__.py"):  # not imported by name
        (package / name).write_text("VALUE = 2\n")
        memo.code_digest.cache_clear()
        assert memo.code_digest("memo_pkg.compute") == before, name
    for name in ("deep.py", "helper.py", "compute.py"):
        (package / name).write_text((package / name).read_text() + "# changed\n")
        memo.code_digest.cache_clear()
        after = memo.code_digest("memo_pkg.compute")
        assert after != before, name
        before = after


def test_a_changed_computation_misses_the_cache(package, tmp_path):
    compute = importlib.import_module("memo_pkg.compute").compute
    counter = Counter(_frames()["analysis"])
    for _ in range(2):
        memo.cached(tmp_path / "cache", "entry", "k", compute, counter)
    assert counter.calls == 1
    (package / "deep.py").write_text("VALUE = 2\n")
    memo.code_digest.cache_clear()
    memo.cached(tmp_path / "cache", "entry", "k", compute, counter)
    assert counter.calls == 2


def _report_outputs(cfg) -> dict[str, list[str]]:
    """Lines of the leaderboards (less the header line naming the build time; less ``history.csv``, the log of
    builds) and of every ``results/*.csv``."""
    lb, res = Path(cfg.leaderboard_dir), cfg.out_dir / "results"
    out = {p.name: [line for line in p.read_text().splitlines() if " built " not in line]
           for p in sorted(lb.iterdir()) if p.suffix in (".csv", ".md") and p.name != "history.csv"}
    return out | {f"results/{p.name}": p.read_text().splitlines() for p in sorted(res.glob("*.csv"))}


def test_a_report_from_the_cache_is_the_report_computed_without_it(tmp_path):
    # 6 samples (the sweeps need 6) and a one-pass capture: every analysis the report caches has an entry.
    cfg = smoke_config(tmp_path, make_model(tmp_path / "model"), max_samples=6, one_pass={"timesteps": [250, 750]})
    assert not execute(cfg, scheduler="inline").failed
    cache = cfg.out_dir / "results" / "cache"
    build_report(cfg)
    computed, entries = _report_outputs(cfg), {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert sorted(name.rsplit("-", 1)[0] for name in entries) == [
        "methods", "viton_hd-confounds", "viton_hd-correlations", "viton_hd-metaeval", "viton_hd-one-pass",
        "viton_hd-power", "viton_hd-sweep-g", "viton_hd-sweep-r"]
    assert all(len(computed[f"results/{f}.csv"]) > 1 for f in ("correlations", "sweep", "one_pass_agreement"))
    build_report(cfg)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == entries  # read, none recomputed
    assert _report_outputs(cfg) == computed
    shutil.rmtree(cache)
    build_report(cfg)
    assert _report_outputs(cfg) == computed
