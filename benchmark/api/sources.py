"""Where a model's files are: a local path, or a hub id's snapshot in the local Hugging Face cache.

Every adapter finds its model (and option paths such as ``vae``) through
:func:`resolve_model_source`, so a config may name a model the same way for
every adapter:

* an existing local path: absolute, relative to ``base`` (the repository
  root), or relative to the working directory, in that order;
* otherwise a hub id (``owner/name``): the snapshot of its ``main`` revision
  in the local Hugging Face cache (``<cache>/models--owner--name/snapshots/``);
  ``owner/name/sub/folder`` is a folder inside that snapshot (e.g. the
  ``vae`` of a Stable Diffusion repository).
  Nothing is downloaded: machines that run the benchmark may have no
  internet, and a run must not fetch gigabytes behind the user's back.

The cache folder is read from the environment at call time with
``huggingface_hub``'s own rules (``HF_HUB_CACHE``, else the legacy
``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``), so a
worker whose environment is set after ``huggingface_hub`` was imported still
looks in the right place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from benchmark.errors import UserError

from huggingface_hub import snapshot_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

# owner/name[/sub/folder] with hub-legal characters; anything else ("./x", "~/x", "/x", "a/../b") is only a path.
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HUB_ID = re.compile(rf"^(?P<repo>{_PART}/{_PART})(?:/(?P<sub>{_PART}(?:/{_PART})*))?/?$")


class ModelSourceError(FileNotFoundError, UserError):
    """A model (or one of its option paths) is neither a local path nor a hub id in the local cache.

    ``looked_at`` are the local paths tried, ``cache`` the hub cache folder tried
    (None when ``path`` is not a hub id); the message says how to get the model.
    """

    def __init__(self, path: str, looked_at: list[Path], cache: Path | None, what: str = "model",
                 suggest: str | None = None, reason: str = ""):
        self.path, self.looked_at, self.cache = path, looked_at, cache
        places = " nor ".join(str(p) for p in looked_at)
        msg = f"{what} {path!r} not found: no local file or folder at {places}"
        hub = split_hub_id(path) if cache is not None else None
        hub_id = hub[0] if hub is not None else suggest
        if hub is not None:
            msg += (f", and the hub id {hub[0]!r} is not in the local Hugging Face cache {cache}: "
                    f"{reason or 'not found'} "
                    f"(looked for {cache}/models--{hub[0].replace('/', '--')}/snapshots/<commit of refs/main>"
                    f"{'/' + hub[1] if hub[1] else ''}; set HF_HUB_CACHE or HF_HOME to use another cache)")
        msg += ". Nothing is downloaded here."
        if hub_id is not None:
            msg += (f" On a machine with internet run `hf download {hub_id}` (it fills the cache; copy that cache "
                    f"folder here or point HF_HUB_CACHE at it), or `hf download {hub_id} --local-dir <folder>` "
                    f"and set this path to <folder>.")
        else:
            msg += " Put the files there, or set the path to an existing folder or to a hub id (owner/name)."
        super().__init__(msg)


def split_hub_id(path: str) -> tuple[str, str] | None:
    """``owner/name[/sub/folder]`` -> (``owner/name``, ``sub/folder`` or ""); None when ``path`` is no hub id."""
    m = _HUB_ID.match(path)
    if m is None or ".." in path:
        return None
    return m["repo"], m["sub"] or ""


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment now (same rules as ``huggingface_hub.constants``)."""
    env = os.environ

    def expand(p: str) -> str:
        return os.path.expandvars(os.path.expanduser(p))

    home = expand(env.get("HF_HOME", os.path.join(env.get("XDG_CACHE_HOME", os.path.join("~", ".cache")),
                                                  "huggingface")))
    return Path(expand(env.get("HF_HUB_CACHE", env.get("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub")))))


def local_candidates(path: str, base: Path | None) -> list[Path]:
    """The local paths ``path`` may mean: itself if absolute, else under ``base`` then under the working directory."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return [p]
    out = [Path(base) / p] if base is not None else []
    cwd = Path.cwd() / p
    return out + [cwd] if cwd not in out else out


def resolve_model_source(path: str, base: Path | None = None, *, what: str = "model",
                         suggest: str | None = None) -> Path:
    """The local file or folder that holds the model named ``path``.

    ``path``: a local path (absolute, relative to ``base``, or relative to the
    working directory) or a hub id already in the local Hugging Face cache
    (``owner/name``, or ``owner/name/sub/folder`` for a folder inside it).
    ``base``: the folder relative paths are read against first (the repository
    root for configs). ``what`` names the model in the error (e.g. ``"VAE
    (option vae)"``); ``suggest`` is a hub id to suggest when ``path`` is a
    local path that is missing (e.g. the adapter's released checkpoint).

    Returns the existing local path or the cached snapshot folder
    (``<cache>/models--owner--name/snapshots/<commit>``). Raises
    :class:`ModelSourceError` naming every place looked at and how to get it.
    """
    path = str(path)
    candidates = local_candidates(path, base)
    for c in candidates:
        if c.exists():
            return c
    hub = split_hub_id(path)
    if hub is None:
        raise ModelSourceError(path, candidates, None, what, suggest)
    repo_id, sub = hub
    cache = hub_cache_dir()
    try:
        snapshot = Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=True))
    except (OSError, ValueError, EntryNotFoundError) as err:
        # LocalEntryNotFoundError: not cached (IncompleteSnapshotError: partly); HFValidationError: a bad id
        if type(err) is LocalEntryNotFoundError:
            reason = "no snapshot of its main revision is cached"
        else:
            lines = str(err).strip().splitlines()
            reason = f"{type(err).__name__}: {lines[0] if lines else ''}"
        raise ModelSourceError(path, candidates, cache, what, suggest, reason) from err
    if sub and not (snapshot / sub).exists():
        raise ModelSourceError(path, candidates, cache, what, suggest, f"its cached snapshot {snapshot} has no {sub}")
    return snapshot / sub if sub else snapshot


def model_source_problem(path: str, base: Path | None = None, *, what: str = "model",
                         suggest: str | None = None) -> str | None:
    """For ``validate``: None when :func:`resolve_model_source` finds ``path``, else its error message."""
    try:
        resolve_model_source(path, base, what=what, suggest=suggest)
    except ModelSourceError as err:
        return str(err)
    return None
