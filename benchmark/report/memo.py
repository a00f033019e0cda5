"""Results of slow, pure report steps kept next to the frames, keyed by their inputs and the code computing them.

A rebuilt report whose store, settings and code did not change finds every analysis here instead of redoing its
permutation tests and bootstraps; a change of an input, of the computing function's module or of a module of
its package that it imports (transitively) misses. Entries are data only (``.npz`` read with
``allow_pickle=False``: arrays, and a JSON tree describing frames, containers and scalars), so a writable shared
store cannot run code in the next report; an entry that does not read back is recomputed and replaced.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import pandas as pd

from benchmark.store import write_atomic

T = TypeVar("T")
TREE = "tree"  # the npz member holding the JSON tree; the others are its arrays


def _plain(value):
    """JSON stand-in for what :func:`digest` meets besides JSON values: arrays whole (``str`` would elide)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return str(value)


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    """What :func:`digest` hashes of a frame: its columns, dtypes and index names, then one 64-bit hash per row
    (index included; linear, a million rows in a fraction of a second), or its CSV text when a cell is not
    hashable (a list)."""
    head = json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()] + [list(map(str, frame.index.names))])
    try:
        return head.encode() + pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    except TypeError:
        return head.encode() + frame.to_csv(index=True).encode()


def digest(*parts) -> str:
    """Digest of frames (their contents, index and columns), arrays and JSON-serialisable values."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, pd.DataFrame):
            h.update(_frame_bytes(p))
        else:
            h.update(json.dumps(p, sort_keys=True, default=_plain).encode())
    return h.hexdigest()[:20]


# --- the code of a computation --------------------------------------------------------------------------------

def _source(module: str) -> Path | None:
    """The source file of ``module``, located from its top-level module without importing anything below it."""
    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    origin = Path(spec.origin)
    if not rest:
        return origin
    if spec.submodule_search_locations is None:
        return None
    base = origin.parent.joinpath(*rest.split("."))
    return next((p for p in (base / "__init__.py", base.with_suffix(".py")) if p.is_file()), None)


def _imports(module: str, path: Path, source: bytes) -> list[str]:
    """Absolute names of the modules of ``module``'s top-level package that its source imports, anywhere in it
    (function-level imports too); ``from a import b`` names ``a`` and ``a.b`` (``b`` may be a submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names += [base] + [f"{base}.{a.name}" for a in node.names]
    top = module.partition(".")[0]
    return [n for n in names if n == top or n.startswith(f"{top}.")]


@functools.cache
def code_digest(module: str) -> str:
    """SHA-256 of the source of ``module`` and of every module of its top-level package that it imports,
    transitively (found by reading the files; a parent package counts where it is imported by name). Once per
    process: the code a process runs does not change under it."""
    sources, seen, todo = {}, set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _source(name)
        if path is not None:
            sources[name] = path.read_bytes()
            todo += _imports(name, path, sources[name])
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(f"{name}\0{len(sources[name])}\0".encode() + sources[name])
    return h.hexdigest()


# --- entries: a JSON tree plus arrays -------------------------------------------------------------------------

def _encode(value, arrays: dict) -> object:
    """JSON node of ``value``; arrays go to ``arrays`` (named by position) and are referenced by name.
    TypeError for a type an entry cannot hold exactly."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        if value.dtype.kind not in "biuf":
            raise TypeError(f"cannot cache a {value.dtype} scalar")
        return {"scalar": [value.dtype.str, value.item()]}
    if value is None or type(value) in (bool, int, float, str):  # exact types: a subclass would not come back
        return value
    if type(value) in (tuple, list):
        return {type(value).__name__: [_encode(v, arrays) for v in value]}
    if type(value) is dict:
        return {"dict": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, pd.DataFrame):
        return {"frame": {"index": _encode_index(value.index, arrays), "columns": _encode_index(value.columns, arrays),
                          "data": [_encode_values(value.iloc[:, i], arrays) for i in range(value.shape[1])],
                          "attrs": _encode(dict(value.attrs), arrays)}}
    if isinstance(value, np.ndarray):
        return {"array": _put(value, arrays)}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return {"tensor": _put(value.detach().cpu().numpy(), arrays)}
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _put(array: np.ndarray, arrays: dict) -> str:
    if array.dtype.kind not in "biufcmM":
        raise TypeError(f"cannot cache a {array.dtype} array")
    name = str(len(arrays))
    arrays[name] = array
    return name


def _encode_index(index: pd.Index, arrays: dict) -> dict:
    if isinstance(index, pd.RangeIndex):
        return {"range": [index.start, index.stop, index.step], "name": _encode(index.name, arrays)}
    if isinstance(index, pd.MultiIndex):
        raise TypeError("cannot cache a MultiIndex")
    return {"values": _encode_values(index, arrays), "name": _encode(index.name, arrays)}


def _encode_values(values: pd.Series | pd.Index, arrays: dict) -> dict:
    """A column's or an index's values with their dtype: numpy arrays as they are, strings and objects in JSON."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        return {"strings": [None if pd.isna(v) else v for v in values], "storage": dtype.storage,
                "na": "NA" if dtype.na_value is pd.NA else "nan"}
    if not isinstance(dtype, np.dtype):
        raise TypeError(f"cannot cache a {dtype} column")
    if dtype.kind == "O":
        return {"objects": [_encode(v, arrays) for v in values]}
    return {"array": _put(values.to_numpy(), arrays)}


def _decode(node, arrays):
    """Inverse of :func:`_encode`; ValueError (or a KeyError, TypeError) for a node it does not write."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if not (isinstance(node, dict) and len(node) == 1):
        raise ValueError(f"not an entry node: {str(node)[:80]}")
    (tag, body), = node.items()
    if tag in ("tuple", "list"):
        return (tuple if tag == "tuple" else list)(_decode(v, arrays) for v in body)
    if tag == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in body}
    if tag == "scalar":
        return np.dtype(body[0]).type(body[1])
    if tag == "array":
        return arrays[body]
    if tag == "tensor":
        import torch

        return torch.from_numpy(arrays[body])
    if tag == "frame":
        index = _decode_index(body["index"], arrays)
        columns = [pd.Series(v, index=index, dtype=v.dtype, copy=False)
                   for v in (_decode_values(c, arrays) for c in body["data"])]
        frame = pd.DataFrame(dict(enumerate(columns)), index=index)
        frame.columns = _decode_index(body["columns"], arrays)
        frame.attrs = _decode(body["attrs"], arrays)
        return frame
    raise ValueError(f"unknown entry node {tag!r}")


def _decode_index(node: dict, arrays) -> pd.Index:
    name = _decode(node["name"], arrays)
    if "range" in node:
        return pd.RangeIndex(*node["range"], name=name)
    values = _decode_values(node["values"], arrays)
    return pd.Index(values, dtype=values.dtype, name=name)


def _decode_values(node: dict, arrays):
    if "strings" in node:
        na = pd.NA if node["na"] == "NA" else np.nan
        return pd.array(node["strings"], dtype=pd.StringDtype(node["storage"], na))
    if "objects" in node:
        out = np.empty(len(node["objects"]), dtype=object)
        for i, v in enumerate(node["objects"]):
            out[i] = _decode(v, arrays)
        return out
    return arrays[node["array"]]


def dumps(value) -> bytes:
    """``value`` (frames, arrays, tensors, scalars, None, and tuples, lists and dicts of them) as entry bytes."""
    arrays: dict = {}
    tree = json.dumps(_encode(value, arrays))
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{TREE: np.frombuffer(tree.encode(), dtype=np.uint8)})
    return buf.getvalue()


def load(path: Path):
    """The value of an entry written by :func:`dumps`; an exception for anything else. Never unpickles."""
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not an npz archive")
    with data:
        tree = json.loads(data[TREE].tobytes().decode())
        return _decode(tree, {k: data[k] for k in data.files if k != TREE})


def entry(folder: Path, name: str, key: str, fn: Callable) -> Path:
    """Where :func:`cached` keeps ``fn``'s result for ``key``: the entry's name adds ``fn`` and the code digests of
    its module and of this one (the entry format)."""
    full = digest(key, f"{fn.__module__}:{fn.__qualname__}", code_digest(fn.__module__), code_digest(__name__))
    return Path(folder) / f"{name}-{full}.npz"


def read_entry(path: Path):
    """The value of the entry at ``path``; None when there is none or it cannot be trusted (damaged, foreign or of
    an old format: it is recomputed)."""
    if path.is_file():
        try:
            return load(path)
        except Exception:  # noqa: BLE001 - never trusted, recomputed
            pass
    return None


def cached(folder: Path, name: str, key: str, fn: Callable[..., T], /, *args, **kwargs) -> T:
    """``fn(*args, **kwargs)``, or its entry under ``folder`` (the run's own). ``key``: a :func:`digest` of
    everything the result depends on besides code (:func:`entry`)."""
    path = entry(folder, name, key, fn)
    value = read_entry(path)
    if value is not None:
        return value
    value = fn(*args, **kwargs)
    write_entry(path, value)
    return value


def write_entry(path: Path, value) -> None:
    """Keep ``value`` as the entry at ``path`` (:func:`entry`), read back by :func:`read_entry`."""
    write_atomic(path, dumps(value))
