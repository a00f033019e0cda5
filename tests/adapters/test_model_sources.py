"""Where models are found: local paths, hub ids in a local Hugging Face cache (a fake one, laid out by hand as
``huggingface_hub`` writes it), and the errors that say where to put a missing model."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import benchmark.adapters  # noqa: F401  (registers the adapters)
from benchmark.api.model import ModelSpec
from benchmark.api.sources import (ModelSourceError, hub_cache_dir, model_source_problem, resolve_model_source,
                                   split_hub_id)
from benchmark.registry import ADAPTERS

from adapter_tiny_models import BUILDERS, CONDITIONS

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_snapshot(cache: Path, repo_id: str, commit: str = COMMIT) -> Path:
    """``<cache>/models--owner--name/{refs/main, snapshots/<commit>/}``: the layout of a downloaded repo."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache named by HF_HUB_CACHE; the working directory is an empty folder."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    for var in ("HF_HOME", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return cache


@pytest.fixture
def base(tmp_path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


# --- resolve_model_source -----------------------------------------------------------------------
def test_hub_id_resolves_to_its_cached_snapshot(cache, base) -> None:
    snapshot = fake_snapshot(cache, "Fantasy-Studio/Paint-by-Example")
    (snapshot / "model_index.json").write_text("{}")
    assert resolve_model_source("Fantasy-Studio/Paint-by-Example", base) == snapshot
    assert model_source_problem("Fantasy-Studio/Paint-by-Example", base) is None


def test_refs_main_picks_the_snapshot(cache, base) -> None:
    fake_snapshot(cache, "owner/model", "a" * 40)
    newer = fake_snapshot(cache, "owner/model", "b" * 40)  # refs/main now names the second commit
    assert resolve_model_source("owner/model", base) == newer


def test_subfolder_of_a_cached_repo(cache, base) -> None:
    snapshot = fake_snapshot(cache, "owner/sd")
    (snapshot / "vae").mkdir()
    assert resolve_model_source("owner/sd/vae", base) == snapshot / "vae"
    with pytest.raises(ModelSourceError, match=f"its cached snapshot {snapshot} has no unet"):
        resolve_model_source("owner/sd/unet", base)


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch, base) -> None:
    """HF_HUB_CACHE wins over HF_HOME (whose cache is $HF_HOME/hub), read when called, not at import."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    snapshot = fake_snapshot(tmp_path / "home" / "hub", "owner/model")
    assert resolve_model_source("owner/model", base) == snapshot
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub_cache_dir() == tmp_path / "elsewhere"
    with pytest.raises(ModelSourceError, match=str(tmp_path / "elsewhere")):
        resolve_model_source("owner/model", base)
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"


def test_uncached_hub_id_says_where_it_looked_and_how_to_get_it(cache, base) -> None:
    with pytest.raises(ModelSourceError) as err:
        resolve_model_source("someone/missing-model", base, what="Paint-by-Example model")
    msg = str(err.value)
    assert msg.startswith("Paint-by-Example model 'someone/missing-model' not found")
    assert str(base / "someone" / "missing-model") in msg  # the local path looked at
    assert str(Path.cwd() / "someone" / "missing-model") in msg
    assert str(cache / "models--someone--missing-model") + "/snapshots/" in msg  # the cache folder looked at
    assert "no snapshot of its main revision is cached" in msg
    assert "`hf download someone/missing-model`" in msg and "huggingface-cli" not in msg
    assert isinstance(err.value, FileNotFoundError)
    assert err.value.cache == cache and err.value.looked_at == [base / "someone" / "missing-model",
                                                               Path.cwd() / "someone" / "missing-model"]
    assert model_source_problem("someone/missing-model", base, what="Paint-by-Example model") == msg


def test_local_paths_come_before_the_cache(cache, base, tmp_path) -> None:
    fake_snapshot(cache, "models/pbe")
    (base / "models" / "pbe").mkdir(parents=True)
    assert resolve_model_source("models/pbe", base) == base / "models" / "pbe"  # relative to base first
    (Path.cwd() / "only-here").mkdir()
    assert resolve_model_source("only-here", base) == Path.cwd() / "only-here"  # then the working directory
    (tmp_path / "abs").mkdir()
    assert resolve_model_source(str(tmp_path / "abs"), base) == tmp_path / "abs"
    (tmp_path / "model.ckpt").write_bytes(b"")
    assert resolve_model_source(str(tmp_path / "model.ckpt"), base) == tmp_path / "model.ckpt"  # files too


@pytest.mark.parametrize("path", ["/nowhere/model", "./model", "a/b/../c", "~/model", "one-part"])
def test_missing_path_that_is_no_hub_id(cache, base, path) -> None:
    assert split_hub_id(path) is None
    with pytest.raises(ModelSourceError) as err:
        resolve_model_source(path, base)
    msg = str(err.value)
    assert err.value.cache is None and "Hugging Face cache" not in msg
    assert all(str(p) in msg for p in err.value.looked_at)
    assert "Put the files there" in msg
    with pytest.raises(ModelSourceError, match="`hf download owner/released`"):  # the adapter's suggestion
        resolve_model_source(path, base, suggest="owner/released")


def test_split_hub_id() -> None:
    assert split_hub_id("owner/name") == ("owner/name", "")
    assert split_hub_id("owner/name.v1_2/vae/") == ("owner/name.v1_2", "vae")
    assert split_hub_id("owner/name/a/b.ckpt") == ("owner/name", "a/b.ckpt")
    for bad in ("name", "/owner/name", "owner//name", ".x/y", "owner/na me"):
        assert split_hub_id(bad) is None, bad


# --- every adapter through the one function ------------------------------------------------------
def _hub_path(adapter: str, spec_path: str, folder: Path) -> str:
    """The hub id that names ``spec_path`` once ``folder`` is the snapshot of ``tiny/<adapter>``."""
    rel = Path(spec_path).relative_to(folder)
    return f"tiny/{adapter}" + ("" if rel == Path(".") else f"/{rel.as_posix()}")


@pytest.mark.parametrize("adapter", sorted(BUILDERS))
def test_every_adapter_loads_a_cached_hub_id(cache, adapter) -> None:
    snapshot = fake_snapshot(cache, f"tiny/{adapter}")
    spec = BUILDERS[adapter](snapshot)
    by_hub_id = ModelSpec(spec.name, spec.adapter, _hub_path(adapter, spec.path, snapshot), spec.options)
    model = ADAPTERS.get(adapter)(by_hub_id, "cpu")
    assert model.identity()["weights"] == ADAPTERS.get(adapter)(spec, "cpu").identity()["weights"]


MISSING_OPTIONS = {"generic_unet": {"conditions": CONDITIONS},
                   "ldm_unet": {"factory": "adapter_tiny_models:build_tiny_ldm", "token_grid": [4, 4]},
                   "flux_kontext": {"prompt_embeds": "p.safetensors"}}


@pytest.mark.parametrize("adapter", sorted(BUILDERS))
def test_every_adapter_names_the_cache_for_an_uncached_hub_id(cache, adapter) -> None:
    spec = ModelSpec("m", adapter, "someone/not-cached", MISSING_OPTIONS.get(adapter, {}))
    with pytest.raises(ModelSourceError, match="`hf download someone/not-cached`") as err:
        ADAPTERS.get(adapter)(spec, "cpu")
    assert err.value.cache == cache


def test_vae_option_is_a_source_too(cache, tmp_path) -> None:
    spec = BUILDERS["reference_unet"](tmp_path / "model")
    vae_snapshot = fake_snapshot(cache, "owner/sd")
    (tmp_path / "model" / "vae").rename(vae_snapshot / "vae")
    model = ADAPTERS.get("reference_unet")(ModelSpec("m", "reference_unet", spec.path, {"vae": "owner/sd/vae"}), "cpu")
    assert model.pipe.vae is not None
    with pytest.raises(ModelSourceError, match=r"VAE \(option vae\) 'owner/other/vae' not found"):
        ADAPTERS.get("reference_unet")(ModelSpec("m", "reference_unet", spec.path, {"vae": "owner/other/vae"}), "cpu")


def test_no_adapter_looks_for_models_on_its_own() -> None:
    """One function finds models: no adapter module calls the hub client or keeps its own resolver."""
    for name in ADAPTERS.names():
        source = inspect.getsource(inspect.getmodule(ADAPTERS.get(name)))
        assert "snapshot_download" not in source and "HF_HUB_CACHE" not in source, name
        assert "resolve_model_source" in source or "model_and_vae" in source, name
