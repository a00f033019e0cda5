"""Suite-wide settings: one thread per process, a fixed seed per test, the slowest test files scheduled first, and
the embedded datasets generated once when pytest-xdist workers share a fresh checkout."""

import os

# Tests use tiny models: one thread each avoids oversubscribing small machines
# (subprocesses and dask workers started by tests inherit these).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

# Test files whose tests (module fixtures included) take the longest, slowest first. pytest.ini hands whole files
# to the xdist workers in collection order (--dist loadfile --no-loadscope-reorder): starting with these keeps one
# long file from running alone at the end while the other worker idles.
SLOW_FIRST = (
    "tests/test_real_layout_end_to_end.py",
    "tests/runner/test_interrupts.py",
    "tests/test_end_to_end.py",
    "tests/runner/test_store_integrity.py",
    "tests/runner/test_regressions.py",
    "tests/training/test_training.py",
    "tests/runner/test_jobqueue.py",
    "tests/adapters/test_real_scale.py",
)


def pytest_collection_modifyitems(config, items):
    """Move the files of SLOW_FIRST to the front (stable: the order inside a file and of the rest is kept)."""
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session", autouse=True)
def _embedded_data(tmp_path_factory):
    """Under pytest-xdist, the embedded tasks' procedural datasets exist before any test reads them: two workers
    (or their subprocesses) generating the same missing tree at once could read each other's half-written
    files. Each tree is generated under its own file lock; the workers take the trees in opposite orders, so that
    on a fresh checkout they generate different trees at the same time."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return
    from filelock import FileLock

    from benchmark.training.embedded import EMBEDDED_TASKS

    tasks = sorted(EMBEDDED_TASKS.values(), key=lambda t: t.name, reverse=int(worker.removeprefix("gw")) % 2 == 1)
    shared = tmp_path_factory.getbasetemp().parent
    for task in tasks:
        with FileLock(str(shared / f"embedded-{task.name}.lock")):
            task.data_root  # generates the tree when its COMPLETE.json is missing


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
