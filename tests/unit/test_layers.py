"""The package's layers, read from the source (no module is imported): every project import points down or
sideways, and an import inside a function is one of a listed few, each with its reason.

A module belongs to the layer of the longest name in :data:`LAYERS` that it starts with. Imports under
``if TYPE_CHECKING:`` count for the direction (they are dependencies too) but are not function-level.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from benchmark.config import REPO_ROOT

PACKAGE = REPO_ROOT / "benchmark"

# Lowest first. A module may import from its own layer and from the layers below it, never from above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # what everything reads: user errors, the names and defaults of maps and scores, the store's files and keys
    ("foundation", ("benchmark.errors", "benchmark.defaults", "benchmark.store")),
    # the extension registry and the light contracts (model specs, samples, where model files come from)
    ("contracts", ("benchmark.registry", "benchmark.api", "benchmark.api.spec", "benchmark.api.sample",
                   "benchmark.api.sources")),
    ("config", ("benchmark.config",)),
    # self-contained libraries: attention capture, the procedural generators, statistics, the mini-model builders
    ("libraries", ("benchmark.capture", "benchmark.procedural", "benchmark.analysis", "benchmark.models",
                   "benchmark.models.mini")),
    # the model contract (on capture's token layouts), datasets and the embedded-default world, stored maps,
    # the reference pipelines
    ("models and data", ("benchmark.api.model", "benchmark.training.embedded", "benchmark.datasets",
                         "benchmark.results", "benchmark.pipelines")),
    ("scoring", ("benchmark.scoring",)),  # stored maps into numbers
    # what plugs into a run: image metrics, attribution methods, model adapters, published-shape stand-ins
    ("extensions", ("benchmark.metrics", "benchmark.methods", "benchmark.adapters", "benchmark.models.published")),
    ("run", ("benchmark.run",)),  # planning and executing jobs
    ("report", ("benchmark.report",)),  # pages from the store alone
    # commands beside run and report
    ("commands", ("benchmark.training", "benchmark.perf", "benchmark.doctor", "benchmark.verify")),
    ("entry", ("benchmark.cli", "benchmark.__main__", "benchmark")),  # "benchmark": the package itself only
]

# (importing module, imported module) -> why the import sits inside a function. heavy: importing it at the top
# would load the named library in a command that does not need it (``validate``, ``ls``, ``report`` stay
# torch-free, matplotlib is loaded where a figure is drawn); cycle: the imported module imports this one.
FUNCTION_LEVEL: dict[tuple[str, str], str] = {
    ("benchmark.cli", "benchmark.run.runner"): "heavy: the job code (numpy, huggingface_hub, tqdm); only `run`",
    ("benchmark.cli", "benchmark.report"): "heavy: pandas, scipy, torch (the figures); only `run` and `report`",
    ("benchmark.cli", "benchmark.report.changes"): "heavy: pandas, scipy",
    ("benchmark.cli", "benchmark.report.store_view"): "heavy: pandas; only `ls --config`",
    ("benchmark.cli", "benchmark.run.tasks"): "heavy: numpy, PIL (the procedural generators); only `validate`",
    ("benchmark.cli", "benchmark.training.embedded"): "heavy: numpy, PIL; only `train`",
    ("benchmark.cli", "benchmark.training.train"): "heavy: torch, diffusers",
    ("benchmark.cli", "benchmark.perf.capture"): "heavy: torch",
    ("benchmark.cli", "benchmark.doctor"): "heavy: the job code its checks call; only `doctor`",
    ("benchmark.doctor", "benchmark.capture"): "heavy: torch (the capture check)",
    ("benchmark.doctor", "benchmark.capture.session"): "heavy: torch (the capture check)",
    ("benchmark.scoring.terms", "benchmark.scoring.imacs"): "heavy: torch; IMACS from stored terms needs none",
    ("benchmark.scoring.terms", "benchmark.scoring.maps"): "heavy: torch",
    ("benchmark.scoring.terms", "benchmark.capture.accumulator"): "heavy: torch",
    ("benchmark.scoring.terms", "benchmark.analysis.segmentation"): "heavy: scipy, pandas (benchmark.analysis)",
    ("benchmark.models.published", "benchmark.adapters.pipeline_adapter"): "heavy: diffusers, transformers",
    ("benchmark.models.published", "benchmark.models.mini"): "heavy: diffusers, transformers",
    ("benchmark.run.jobs", "benchmark.run.generation"): "heavy: torch; a run with nothing to do loads none",
    ("benchmark.run.jobs", "benchmark.run.one_pass"): "heavy: torch",
    ("benchmark.run.jobs", "benchmark.results.sample_maps"): "heavy: torch",
    ("benchmark.run.jobs", "benchmark.scoring.figures"): "heavy: matplotlib, torch",
    ("benchmark.run.jobs", "benchmark.metrics"): "heavy: torch (benchmark.metrics.set_metrics)",
    ("benchmark.report", "benchmark.report.build"): "heavy: torch, scipy; `ls` reads the store view alone",
    ("benchmark.report.metaeval", "benchmark.scoring.figures"): "heavy: matplotlib, torch",
    ("benchmark.report.trends", "benchmark.scoring.figures"): "heavy: matplotlib, torch",
    ("benchmark.report.pairs", "benchmark.metrics"): "heavy: torch (benchmark.metrics.set_metrics)",
    ("benchmark.report.store_view", "benchmark.metrics"): "heavy: torch (benchmark.metrics.set_metrics)",
    ("benchmark.report.tables", "benchmark.metrics"): "heavy: torch (benchmark.metrics.set_metrics)",
    ("benchmark.perf.capture", "benchmark.models.mini"): "heavy: diffusers, transformers",
    ("benchmark.perf.capture", "benchmark.perf.real"): "cycle: perf.real imports perf.capture",
    ("benchmark.perf.report", "benchmark.report.history"): "heavy: pandas (measured in a subprocess of its own)",
    ("benchmark.perf.report", "benchmark.report.trends"): "heavy: pandas, torch (the figures)",
    ("benchmark.perf.synthetic_store", "benchmark.results.sample_maps"): "heavy: torch",
    ("benchmark.perf.synthetic_store", "benchmark.metrics"): "heavy: torch (benchmark.metrics.set_metrics)",
    ("benchmark.perf.synthetic_store", "benchmark.report.history"): "heavy: pandas",
    ("benchmark.perf.synthetic_store", "benchmark.report.tables"): "heavy: pandas",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix (a whole dotted part) of ``module``."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or p != "benchmark" and module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def project_imports(path: Path, here: str | None = None):
    """(imported module, line, inside a function) of every ``benchmark`` import of ``path`` (the module ``here``,
    by default its name in the package). ``from benchmark.x import y`` names ``benchmark.x.y`` when that is a
    module of the package, else ``benchmark.x``."""
    tree = ast.parse(path.read_text(), str(path))
    here = here or module_name(path)
    is_package = path.name == "__init__.py"
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    pkg = here.split(".") if is_package else here.split(".")[:-1]
                    base = ".".join(pkg[:len(pkg) - child.level + 1] + ([base] if base else []))
                if base == "benchmark" or base.startswith("benchmark."):
                    for alias in child.names:
                        sub = f"{base}.{alias.name}"
                        found.append((sub if _is_module(sub) else base, child.lineno, in_function))
            elif isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names
                             if a.name == "benchmark" or a.name.startswith("benchmark."))
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


@functools.cache
def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (REPO_ROOT / rel).with_suffix(".py").is_file() or (REPO_ROOT / rel / "__init__.py").is_file()


def all_imports() -> list[tuple[str, str, str, bool]]:
    """(importing module, imported module, file:line, inside a function) across the package."""
    return [(module_name(path), target, f"{path.relative_to(REPO_ROOT)}:{line}", in_function)
            for path in sorted(PACKAGE.rglob("*.py")) for target, line, in_function in project_imports(path)]


def test_every_module_is_in_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


def test_the_layers_say_what_the_package_is():
    """The direction the order encodes: jobs are planned and run below the commands that train and measure
    models, above the scoring and the extensions they call; the report sits above the scoring it reads."""
    below = [("benchmark.defaults", "benchmark.config"), ("benchmark.config", "benchmark.capture"),
             ("benchmark.capture", "benchmark.api.model"), ("benchmark.training.embedded", "benchmark.run.tasks"),
             ("benchmark.scoring.terms", "benchmark.run.jobs"), ("benchmark.adapters.ldm_unet", "benchmark.run.jobs"),
             ("benchmark.run.jobs", "benchmark.training.evaluate"), ("benchmark.scoring.terms", "benchmark.report"),
             ("benchmark.report.build", "benchmark.cli")]
    assert [(a, b) for a, b in below if not layer_of(a) < layer_of(b)] == []
    assert layer_of("benchmark") == len(LAYERS) - 1
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("benchmark_other.module")


def test_no_import_goes_up_a_layer():
    upward = [f"{where}: {here} ({LAYERS[layer_of(here)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for here, target, where, _ in all_imports() if layer_of(target) > layer_of(here)]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_function_level_imports_are_the_listed_ones():
    seen, unlisted = set(), []
    for here, target, where, in_function in all_imports():
        if not in_function:
            continue
        seen.add((here, target))
        if (here, target) not in FUNCTION_LEVEL:
            unlisted.append(f"{where}: {here} imports {target} inside a function")
    assert not unlisted, ("move these to the top of the module, or list them in FUNCTION_LEVEL with the reason "
                          "(heavy: which library; cycle: which import):\n" + "\n".join(unlisted))
    stale = sorted(set(FUNCTION_LEVEL) - seen)
    assert not stale, f"FUNCTION_LEVEL lists imports that are no longer inside a function: {stale}"


def test_a_listed_cycle_is_one():
    """An import kept inside a function for a cycle: the imported module does import the importing one at its top."""
    at_top = {(here, target) for here, target, _, in_function in all_imports() if not in_function}
    cycles = [pair for pair, why in FUNCTION_LEVEL.items() if why.startswith("cycle")]
    assert cycles and [(a, b) for a, b in cycles if (b, a) not in at_top] == []


def test_the_scan_sees_imports_at_every_depth(tmp_path):
    """The scanner itself, on a module written here: top-level, TYPE_CHECKING, relative, nested-function and
    method imports, each with whether it is inside a function."""
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\n"
                     "from benchmark.config import RunConfig\n"
                     "if TYPE_CHECKING:\n    from benchmark.run import jobs\n"
                     "from .api import spec\n"
                     "def f():\n    def g():\n        import benchmark.cli\n    return g\n"
                     "class C:\n    def m(self):\n        from benchmark.registry import ADAPTERS\n")
    got = [(target, in_function) for target, _, in_function in project_imports(probe, "benchmark.probe")]
    assert got == [("benchmark.config", False), ("benchmark.run.jobs", False), ("benchmark.api.spec", False),
                   ("benchmark.cli", True), ("benchmark.registry", True)]
