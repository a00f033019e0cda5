"""The verdict at the top of a task page: what the analyses below it say, read from their frames.

Four questions about a task, each answered from the numbers, with the value, interval and p behind the answer:

* are the models distinguishable on the primary quality metric? (``pairs``: paired tests, Holm-adjusted;
  :mod:`benchmark.report.pairs` names the better model of each pair that differs);
* does the score order the models as quality does? (``correlations``, scope ``between models``);
* does it order the samples within a model? (``correlations``, scope ``within (combined)``);
* does the region area explain the pooled correlation? (``confounds``: partial on the areas against plain).

Correlation rows are oriented (``x_sign`` / ``y_sign``: a lower-is-better metric enters negated), so a positive
value means the score tracks better quality. A correlation is *shown* when its CI excludes 0 and its p is below
:data:`ALPHA`. A frame or row that is absent gives "not computed"; a statistic or interval that could not be
estimated gives "not estimable".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.analysis.format import format_estimate, format_p, format_value
from benchmark.registry import metric_label
from benchmark.report.pairs import ALPHA as PAIR_ALPHA

ALPHA = 0.05
FEW_MODELS = 10  # below this many models a between-models interval is wide, and the verdict says so
PAIRS, CORRELATIONS, CONFOUNDS = "pairs", "correlations", "confounds"  # the sections a clause cites


@dataclass(frozen=True)
class Clause:
    """One answered question: ``answer`` a few words ("yes", "not shown", ...), ``detail`` the numbers behind
    it; ``section`` the section backing it (None: none on the page) and ``source`` what its link is called."""

    question: str
    answer: str
    detail: str
    section: str | None = None
    source: str = ""


def verdict(pairs: pd.DataFrame | None, correlations: pd.DataFrame | None, confounds: pd.DataFrame | None,
            quality: str | None, score: str = "imacs_g", method: str = "spearman") -> list[Clause]:
    """The clauses of a task's verdict.

    Args:
        pairs: :func:`benchmark.report.pairs.pairs_frame` rows (``model_a, model_b, metric, p_holm, better``,
            ...), or None / empty.
        correlations: :func:`benchmark.analysis.validity.within_between` rows (``x, y, method, scope,
            statistic, p_value, ci_low, ci_high, n, note``), or None / empty.
        confounds: :func:`benchmark.analysis.confounds.confounds` rows, or None / empty.
        quality: the task's primary quality metric; None when the task has none.
        score: the attribution score judged; method: the correlation read.
    """
    if quality is None:
        return [Clause("Quality metric?", "not computed",
                       "the task has no per-sample quality metric, so no model or score is compared")]
    rows = _rows(correlations, x=score, y=quality, method=method)
    q, s = metric_label(quality), metric_label(score)
    return [
        _distinguishable(_rows(pairs, metric=quality), q),
        _correlated(f"Does {s} order the models as {q} does?", _scope(rows, "between models"), "models",
                    "between-models row"),
        _correlated(f"Does {s} order the samples within a model as {q} does?", _scope(rows, "within (combined)"),
                    "samples", "within (combined) row"),
        _area(_rows(confounds, kind="plain", x=score, y=quality, method=method),
              _rows(confounds, kind="partial", controls="areas", x=score, y=quality, method=method)),
    ]


def render_verdict(clauses: list[Clause], links: Mapping[str, str]) -> list[str]:
    """Markdown of the ``## Verdict`` section; ``links``: section -> link target (an anchor or a file)."""
    lines = ["## Verdict", ""]
    for c in clauses:
        cite = f" ([{c.source}]({links[c.section]}))" if c.section in links else ""
        lines.append(f"- **{c.question}** {c.answer}: {c.detail}{cite}")
    return lines + [""]


def anchor(heading: str) -> str:
    """The link target GitHub gives a Markdown heading (``Confounds: the size`` -> ``#confounds-the-size``)."""
    return "#" + re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _rows(frame: pd.DataFrame | None, **match) -> pd.DataFrame:
    """The rows of ``frame`` equal to ``match`` in every named column; empty when the frame or a column lacks."""
    if frame is None or frame.empty or any(c not in frame for c in match):
        return pd.DataFrame()
    return frame[np.logical_and.reduce([frame[c] == v for c, v in match.items()])]


def _scope(rows: pd.DataFrame, scope: str) -> pd.Series | None:
    hit = _rows(rows, scope=scope)
    return hit.iloc[0] if len(hit) else None


def _note(r: pd.Series) -> str:
    return r["note"] if isinstance(r.get("note"), str) else ""


def _estimable(r: pd.Series) -> bool:
    return not r[["statistic", "p_value", "ci_low", "ci_high"]].isna().any()


def _estimate(r: pd.Series) -> str:
    """``0.420 [0.310, 0.520], p 0.012`` of an estimable row."""
    return format_estimate(r["statistic"], r["ci_low"], r["ci_high"], r["p_value"], r["n"])


def _reading(r: pd.Series) -> str:
    """``agrees``, ``reversed``, ``unclear`` (the CI and the p disagree) or ``not shown``, of an estimable row."""
    excludes = r["ci_low"] > 0 or r["ci_high"] < 0
    significant = r["p_value"] < ALPHA
    if excludes and significant:
        return "agrees" if r["statistic"] > 0 else "reversed"
    return "unclear" if excludes or significant else "not shown"


def _correlated(question: str, r: pd.Series | None, unit: str, source: str) -> Clause:
    """A ``between models`` (unit "models") or ``within (combined)`` (unit "samples") row read as an answer."""
    if r is None:
        return Clause(question, "not computed", "no such correlation row")
    size, method = f"n = {int(r['n'])} {unit}", str(r["method"]).capitalize()
    if pd.isna(r["statistic"]):
        return Clause(question, "not estimable", f"{size}{': ' + _note(r) if _note(r) else ''}", CORRELATIONS,
                      source)
    if not _estimable(r):
        return Clause(question, "not estimable", f"{method} {format_value(r['statistic'])}, p "
                                                 f"{format_p(r['p_value'])}, {size}, but no CI: "
                                                 f"{_note(r) or 'interval undefined'}", CORRELATIONS, source)
    answer, why = {"agrees": ("yes", ""), "reversed": ("no, the reverse", ""),
                   "unclear": ("unclear", "; the CI and the permutation p disagree"),
                   "not shown": ("not shown", "; CI includes 0")}[_reading(r)]
    caveat = f"; with {int(r['n'])} models the interval is wide" if unit == "models" and r["n"] < FEW_MODELS else ""
    return Clause(question, answer, f"{method} {_estimate(r)}, {size}{why}{caveat}", CORRELATIONS, source)


def _area(plain: pd.DataFrame, partial: pd.DataFrame) -> Clause:
    question = "Does the region area explain the pooled correlation?"
    if plain.empty or partial.empty:
        return Clause(question, "not computed", "no area-partial correlation (no stored region area)")
    p, a = plain.iloc[0], partial.iloc[0]
    if not (_estimable(p) and _estimable(a)):
        why = _note(a) or _note(p) or "interval undefined"
        return Clause(question, "not estimable", f"n = {int(a['n'])}: {why}", CONFOUNDS, "confounds")
    both = f"with the areas partialled out {_estimate(a)}, plain {_estimate(p)}"
    if _reading(p) != "agrees":
        answer, detail = "nothing to explain", f"the plain correlation is not shown; {both}"
    elif _reading(a) == "agrees":
        answer, detail = "no", f"it stays {both}"
    else:
        answer, detail = "possibly", f"it is no longer shown {both}"
    return Clause(question, answer, detail, CONFOUNDS, "confounds")


def _distinguishable(pairs: pd.DataFrame, quality: str) -> Clause:
    """Pairs that differ are those whose ``better`` names one of the two (Holm-adjusted p and CI, as the paired
    section decides them)."""
    question = f"Are the models distinguishable on {quality}?"
    if pairs.empty:
        return Clause(question, "not computed", "no paired comparison of the models")
    tested = pairs[pairs["p_holm"].notna()]
    rule = f"at Holm-adjusted p < {PAIR_ALPHA:g} with the CI of the difference excluding 0"
    untested = f"; {len(pairs) - len(tested)} pair(s) not testable" if len(tested) < len(pairs) else ""
    wins: dict[str, list[str]] = {m: [] for m in sorted({*pairs["model_a"], *pairs["model_b"]})}
    for _, r in tested.iterrows():
        if r["better"] in (r["model_a"], r["model_b"]):
            wins[r["better"]].append(r["model_b"] if r["better"] == r["model_a"] else r["model_a"])
    k = sum(map(len, wins.values()))
    if k == 0:
        return Clause(question, "no", f"no pair of models differs significantly on {quality} (0 of {len(tested)} "
                                      f"pairs {rule}){untested}", PAIRS, "paired comparisons")
    ranked = sorted(wins, key=lambda m: -len(wins[m]))
    if k == len(pairs) and sorted(map(len, wins.values())) == list(range(len(wins))):
        # every pair differs and the wins form one chain: a total order
        return Clause(question, "yes, every pair", f"all {k} pairs differ {rule}: {' > '.join(ranked)}", PAIRS,
                      "paired comparisons")
    order = "; ".join(f"{m} > {', '.join(sorted(wins[m]))}" for m in ranked if wins[m])
    return Clause(question, "partly", f"{k} of {len(tested)} pairs differ {rule}: {order}{untested}", PAIRS,
                  "paired comparisons")
