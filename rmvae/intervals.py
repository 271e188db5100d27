"""Student-t intervals: the one formula behind every interval the project prints.

Run metrics (a model's gain over a baseline, over windows) and grid aggregation (an arm's
mean over seeds, paired differences) both call :func:`t_critical`, so a report and
``rmvae evaluate`` cannot disagree on what "95 %" means. Torch-free: reports import it.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats


@functools.lru_cache(maxsize=None)
def t_critical(n: int, confidence: float = 0.95) -> float:
    """Two-sided critical value of a Student-t interval for a mean of ``n`` values (df = n − 1):
    4.30 for 3 seeds, 12.7 for 2; NaN below 2 values. The one quantile every interval uses."""
    return float(stats.t.ppf((1 + confidence) / 2, n - 1)) if n >= 2 else math.nan


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval ``(mean, low, high)``; NaNs are dropped.

    Half-width ``t((1 + confidence) / 2, n − 1) · s / √n`` with ``s`` the sample standard
    deviation (ddof 1). With 3 seeds t = 4.30 (2 degrees of freedom). n = 1 → ``(x, nan, nan)``;
    n = 0 → all NaN.
    """
    values = np.asarray(values, dtype=float).ravel()
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) == 1:
        return mean, float("nan"), float("nan")
    half = t_critical(len(values), confidence) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, float(mean - half), float(mean + half)
