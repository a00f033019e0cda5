"""Analyses and leaderboards, built from the job store alone (``docs/store.md``).

:func:`build_report` (in :mod:`benchmark.report.build`) reads the stored records of a config
(:mod:`benchmark.report.store_view`), builds tidy frames (:mod:`benchmark.report.tables`,
:mod:`benchmark.analysis`) and renders them (:mod:`benchmark.report.render`, :mod:`benchmark.report.figures`).
"""


def build_report(*args, **kwargs):
    """See :func:`benchmark.report.build.build_report` (imported on use: ``ls`` reads the store view alone)."""
    from benchmark.report.build import build_report as build  # heavy: torch, scipy (`ls` loads this package)

    return build(*args, **kwargs)
