"""The maps of each model: a page per model (``<task>/<model>.md``) with its first sample's maps at every stored
level (the first sample that keeps its images: ``store.images``), linked from the "Attribution maps" section of the
task page; a model none of whose samples keeps its images gets a line saying its figures are skipped.

A figure depends only on its stored sample folder (immutable once its job is done) and the threshold, so a
figure whose stamp (sample folder, threshold, figure code version) is unchanged is not drawn again; the others
are drawn in parallel worker processes while the report computes (:class:`Figures`).
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Callable

from benchmark.config import RunConfig
from benchmark.defaults import MAP_LEVEL_LABELS, MAP_LEVEL_UNITS, MAP_LEVELS
from benchmark.report.render import write_markdown
from benchmark.report.store_view import StoreView
from benchmark.results.sample_maps import SampleMaps
from benchmark.store import write_atomic

log = logging.getLogger("benchmark")
FIGURE_VERSION = 1
POOL_MIN_FIGURES = 5  # figures to draw before worker processes are started (each costs its imports)
IMAGES = ("generated.png", "reference.png")  # what a figure draws its maps over (store.images may keep neither)
# The levels drawn one figure each (SRAM has its own), named with what their panels are one per.
LEVELS = tuple((k, MAP_LEVEL_LABELS[k] + (f" ({MAP_LEVEL_UNITS[k][1]})" if k in MAP_LEVEL_UNITS else ""))
               for k in MAP_LEVELS if k != "sram")


def model_figures(cfg: RunConfig, view: StoreView, task: str, models: list[str], lb_dir: Path,
                  figures: Figures) -> list[str]:
    """Markdown of the task page's section: one line per model linking its page ``<task>/<model>.md`` (written
    here: that model's maps), or saying why its figures are skipped; its figures go to ``figures``."""
    thr, fig_dir = cfg.scoring.threshold, lb_dir / "figures"
    lines = ["## Attribution maps", "", "Per model, the maps of its first sample, on a page of its own:", ""]
    for model in models:
        dirs = view.dirs(task, model)
        if not dirs:
            continue
        d = next((d for d in dirs if all((d / f).is_file() for f in IMAGES)), None)
        if d is None:  # store.images: none (or first: 0) kept no PNG to draw the maps over
            lines.append(f"Figures skipped for {model}: no stored sample keeps its images (store.images), "
                         f"so there is nothing to draw its maps over.  ")
            continue
        which = "the model's first" if d == dirs[0] else "the model's first with stored images"
        base, page = fig_dir / task / model, lb_dir / task / f"{model}.md"
        try:
            stored = set(SampleMaps.load(d / "maps.npz").arrays)
        except Exception as err:  # noqa: BLE001 - one unreadable sample never stops the report
            lines.append(f"Figures skipped for {model}: the maps of sample {d.name} cannot be read "
                         f"({type(err).__name__}: {err}); `python -m benchmark verify` names the damaged job.  ")
            continue
        wanted = [(f"{key}.png", "level_figure", (d, key, thr, base / f"{key}.png", f"{task} / {model}: {name}"))
                  for key, name in LEVELS if f"g/{key}" in stored]
        if "sr/volume" in stored:
            wanted.append(("sram.png", "sram_figure", (d, base / "sram.png",
                                                       f"{task} / {model}: SRAM (specific-reference maps)", None, thr)))
        images = []
        for fname, fn, args in wanted:
            out = base / fname
            figures.schedule(f"benchmark.report.figures:{fn}", args, out,
                             f"{d.relative_to(cfg.out_dir).as_posix()}|{thr}")
            images.append(f"![{fname[:-4]}](../{out.relative_to(lb_dir).as_posix()})  ")
        write_markdown(page, [f"# {task} / {model}: attribution maps", "", f"[back to {task}](../{task}.md)", "",
                              f"Sample {d.name}, {which}. {_caption(thr)}", ""] + images)
        levels = ", ".join(fname[:-4].upper() for fname, *_ in wanted) or "no map stored"
        lines.append(f"[{model}]({page.relative_to(lb_dir).as_posix()}): sample {d.name} ({levels})  ")
    return lines + [""]


def _caption(threshold: float) -> str:
    return (f"Generated-side maps over the output (magenta: the inpainting region) and reference-side maps (eq. 17) "
            f"over the reference (magenta: the reference mask); values at or below the threshold {threshold:g} are "
            f"not drawn (eq. 9).")


class Figures:
    """The figures of one report. A figure scheduled while the report computes (:meth:`schedule`) is drawn at once
    in a worker process, in parallel with the rest of the report, unless it exists and was drawn from the same
    inputs by this figure code; :meth:`finish` waits for the last ones and records their stamps. Used as a context
    manager: leaving it by an error (or Ctrl-C) cancels the figures not yet started.

    ``workers`` processes (spawned, so no forked torch state; they ignore SIGINT, which a Ctrl-C sends to the whole
    process group, so that only the report process is interrupted); with ``workers`` <= 1 the figures are drawn
    in this process by :meth:`finish`, as are all of them when fewer than :data:`POOL_MIN_FIGURES` are scheduled."""

    def __init__(self, fig_dir: Path, workers: int):
        self.fig_dir, self.workers = fig_dir, workers
        self.stamps = stamps_of(fig_dir)
        self._pending: list[list] = []  # [fn, args, key, stamp, future or None (drawn by finish)]
        self._pool: ProcessPoolExecutor | None = None

    def schedule(self, fn: str, args: tuple, out: Path, inputs: str) -> None:
        """Draw ``fn(*args)`` (``"module:function"``, writing ``out``) unless ``out`` exists and was drawn from the
        same ``inputs`` (a digest or the stored sample folder) by this figure code."""
        key, stamp = out.relative_to(self.fig_dir).as_posix(), f"{inputs}|{FIGURE_VERSION}"
        if self.stamps.get(key) == stamp and out.is_file():
            return
        self._pending.append([fn, args, key, stamp, None])
        if self.workers > 1 and len(self._pending) >= POOL_MIN_FIGURES:  # fewer are not worth starting processes
            for item in self._pending:
                if item[4] is None:
                    item[4] = self._workers().submit(_draw_one, item[0], item[1])

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        """Other independent work of the report (the method leaderboard's scoring, per model) in the same worker
        processes, queued before the figures scheduled after it; computed here, at once, without workers."""
        if self.workers <= 1:
            future: Future = Future()
            future.set_result(fn(*args, **kwargs))
            return future
        return self._workers().submit(fn, *args, **kwargs)

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
        return self._pool

    @property
    def scheduled(self) -> list[tuple]:
        """(fn, args, key, stamp) of each figure scheduled and not yet finished."""
        return [tuple(item[:4]) for item in self._pending]

    def finish(self) -> None:
        """Wait for every scheduled figure (or draw them here), log the ones that could not be drawn (their stored
        inputs unreadable: no stamp, so the next report tries again) and record the others' stamps."""
        drawn = {}
        try:
            for fn, args, key, stamp, future in self._pending:
                error = future.result() if future is not None else _draw_one(fn, args)
                if error:
                    log.warning("figure %s skipped: %s", key, error)
                else:
                    drawn[key] = stamp
        finally:
            self.close()
        self._pending = []
        if drawn:
            self.stamps.update(drawn)
            write_atomic(self.fig_dir / "stamps.json", json.dumps(self.stamps, indent=0, sort_keys=True))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "Figures":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stamps_of(fig_dir: Path) -> dict:
    try:
        return json.loads((fig_dir / "stamps.json").read_text())
    except (OSError, ValueError):
        return {}


def _draw_one(fn: str, args: tuple) -> str | None:
    """Draw one figure; the reason when it could not be drawn (its stored inputs unreadable), else None."""
    module, _, name = fn.partition(":")
    try:
        getattr(importlib.import_module(module), name)(*args)
    except (OSError, ValueError, KeyError, EOFError) as err:  # a damaged or missing stored file
        return f"{type(err).__name__}: {err}"
    return None
