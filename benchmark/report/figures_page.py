"""The "Attribution maps" section of a task page: per model, the first sample's maps at every stored level.

A figure depends only on its stored sample folder (immutable once its job is done) and the threshold, so a
figure whose stamp (sample folder, threshold, figure code version) is unchanged is not drawn again.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.config import RunConfig
from benchmark.report.store_view import StoreView
from benchmark.store import write_atomic

FIGURE_VERSION = 1
LEVELS = (("ulam", "ULAM"), ("tlam", "TLAM (time groups)"), ("hlam", "HLAM (heads)"), ("llam", "LLAM (layers)"))


def model_figures(cfg: RunConfig, view: StoreView, task: str, models: list[str], lb_dir: Path, fig_dir: Path) -> list[str]:
    from benchmark.report.figures import level_figure, sram_figure

    thr = cfg.scoring.threshold
    stamps_path = fig_dir / "stamps.json"
    try:
        stamps = json.loads(stamps_path.read_text())
    except (OSError, ValueError):
        stamps = {}
    lines = ["## Attribution maps", "",
             f"Per model, its first sample: generated-side maps over the output (magenta: the inpainting region) and "
             f"reference-side maps (eq. 17) over the reference (magenta: the reference mask); values at or below "
             f"the threshold {thr:g} are not drawn (eq. 9).", ""]
    for model in models:
        dirs = view.dirs(task, model)
        if not dirs:
            continue
        d, base = dirs[0], fig_dir / task / model
        lines += [f"### {model} (sample {dirs[0].name})", ""]
        jobs = [(f"{key}.png", lambda out, key=key, name=name: level_figure(d, key, thr, out, f"{task} / {model}: {name}"))
                for key, name in LEVELS]
        jobs.append(("sram.png", lambda out: sram_figure(d, out, f"{task} / {model}: SRAM (specific-reference maps)",
                                                         threshold=thr)))
        for fname, draw in jobs:
            out = base / fname
            stamp = f"{d.relative_to(cfg.out_dir).as_posix()}|{thr}|{FIGURE_VERSION}"
            key = out.relative_to(fig_dir).as_posix()
            if stamps.get(key) == stamp and out.is_file():
                path = out
            else:
                path = draw(out)
                if path is not None:
                    stamps[key] = stamp
            if path is not None:
                lines.append(f"![{fname[:-4]}]({path.relative_to(lb_dir).as_posix()})  ")
        lines.append("")
    write_atomic(stamps_path, json.dumps(stamps, indent=0, sort_keys=True))
    return lines
