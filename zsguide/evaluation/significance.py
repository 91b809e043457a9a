"""Whether a paired difference is a change or noise: better, worse or within noise, by a 2-standard-error rule.

A source against its heuristic twin on the same images gives a paired difference ``d`` (the mean of the per-image
differences, or for the FD the difference of the two FDs) and its standard error ``se`` (the per-image differences'
SE, or the FD's paired bootstrap SE, evaluation/perception.py). The difference counts only beyond :data:`NOISE_SES`
standard errors (about a 5% two-sided test for a normal mean):

    better        if  d beyond +2 se on the good side  (higher PSNR / SSIM, lower MSE / LPIPS / FD / FID)
    worse         if  d beyond 2 se on the bad side
    within noise  otherwise (also d = 0 with se = 0: identical outputs)

Every count of wins and losses (evaluate's cells.csv and report, benchmarks/compare_sources.py, the docs) uses it;
the sign of ``d`` alone would call ``-0.00 +- 0.06 dB`` a loss.
"""

from __future__ import annotations

import math

NOISE_SES = 2.0  # standard errors a difference must exceed to count as better or worse
VERDICTS = ("better", "worse", "within noise")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "mse": False, "mse_unclipped": False, "lpips": False}
HIGHER_IS_BETTER |= {"fd": False, "fid": False}


def verdict(difference: float | None, se: float | None, higher_is_better: bool) -> str | None:
    """``better``, ``worse`` or ``within noise`` for a paired ``difference`` (source minus twin) with standard error
    ``se``; None when either is missing (no comparison)."""
    if difference is None or se is None or not math.isfinite(difference) or not math.isfinite(se):
        return None
    if abs(difference) <= NOISE_SES * se:
        return "within noise"
    return "better" if (difference > 0) == higher_is_better else "worse"


def metric_verdict(record: dict, name: str) -> str | None:
    """The verdict of ``record``'s ``d_<name>`` and ``d_<name>_se`` (an evaluate cell record, cells.csv's columns)."""

    def number(key: str) -> float | None:
        v = record.get(key)
        return None if v in (None, "") else float(v)

    return verdict(number(f"d_{name}"), number(f"d_{name}_se"), HIGHER_IS_BETTER[name])
