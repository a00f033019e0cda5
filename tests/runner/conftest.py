"""Fixtures of the runner tests: one tiny random model, and one two-worker LocalCluster shared by the tests."""

from __future__ import annotations

import pytest

from runner_helpers import make_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("runner-model") / "model")


@pytest.fixture(scope="session")
def cluster():
    """A two-worker process LocalCluster (no resources), and a client to look inside it."""
    from distributed import Client, LocalCluster

    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(local)
    client.wait_for_workers(2, timeout=600)
    yield local, client
    client.close()
    local.close()
