"""The maps of each model: a page per model (``<task>/<model>.md``) with its first sample's maps at every stored
level (the first sample that keeps its images: ``store.images``), linked from the "Attribution maps" section of the
task page; a model none of whose samples keeps its images gets a line saying its figures are skipped.

A figure depends only on its stored sample folder (immutable once its job is done) and the threshold, so a
figure whose stamp (sample folder, threshold, figure code version) is unchanged is not drawn again; the others
are drawn in parallel worker processes (:func:`draw`).
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmark.config import RunConfig
from benchmark.report.render import write_markdown
from benchmark.report.store_view import StoreView
from benchmark.results.sample_maps import SampleMaps
from benchmark.store import write_atomic

log = logging.getLogger("benchmark")
FIGURE_VERSION = 1
IMAGES = ("generated.png", "reference.png")  # what a figure draws its maps over (store.images may keep neither)
LEVELS = (("ulam", "ULAM"), ("tlam", "TLAM (time groups)"), ("hlam", "HLAM (heads)"), ("llam", "LLAM (layers)"))


def model_figures(cfg: RunConfig, view: StoreView, task: str, models: list[str], lb_dir: Path,
                  todo: list[tuple]) -> list[str]:
    """Markdown of the task page's section: one line per model linking its page ``<task>/<model>.md`` (written
    here: that model's maps), or saying why its figures are skipped. The figures still to draw are appended to
    ``todo`` (:func:`schedule`)."""
    thr, fig_dir = cfg.scoring.threshold, lb_dir / "figures"
    stamps = stamps_of(fig_dir)
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
            schedule(todo, fig_dir, f"benchmark.report.figures:{fn}", args, out,
                     f"{d.relative_to(cfg.out_dir).as_posix()}|{thr}", stamps)
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


def schedule(todo: list[tuple], fig_dir: Path, fn: str, args: tuple, out: Path, inputs: str,
             stamps: dict | None = None) -> None:
    """Append the figure ``fn(*args)`` (``"module:function"``, writing ``out``) to ``todo`` unless ``out`` exists
    and was drawn from the same ``inputs`` (a digest or the stored sample folder) by this figure code."""
    key, stamp = out.relative_to(fig_dir).as_posix(), f"{inputs}|{FIGURE_VERSION}"
    if (stamps if stamps is not None else stamps_of(fig_dir)).get(key) != stamp or not out.is_file():
        todo.append((fn, args, key, stamp))


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


def draw(todo: list[tuple], fig_dir: Path, workers: int) -> None:
    """Draw the pending figures (``workers`` processes; spawned, so no forked torch state) and record their stamps."""
    if not todo:
        return
    stamps = stamps_of(fig_dir)
    if workers > 1 and len(todo) > 4:
        # Workers ignore SIGINT: a Ctrl-C (sent to the whole process group) interrupts the report process alone,
        # which cancels the figures not yet started instead of waiting for all of them.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=signal.signal,
                                   initargs=(signal.SIGINT, signal.SIG_IGN))
        try:
            errors = list(pool.map(_draw_one, [fn for fn, *_ in todo], [args for _, args, *_ in todo]))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        errors = [_draw_one(fn, args) for fn, args, *_ in todo]
    for (_, _, key, _), error in zip(todo, errors):
        if error:  # no stamp: tried again by the next report
            log.warning("figure %s skipped: %s", key, error)
    stamps.update({key: stamp for (_, _, key, stamp), error in zip(todo, errors) if not error})
    write_atomic(fig_dir / "stamps.json", json.dumps(stamps, indent=0, sort_keys=True))
