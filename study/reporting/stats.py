"""Statistics for comparing two systems on the same queries, and for summarising repeated seeds.

- `paired_t_test` and `randomization_test`: two-sided tests of "the mean per-query difference is 0".
- `holm`: Holm's step-down adjustment of a family of p-values (controls the family-wise error).
- `mean_ci`: a mean with its t-distribution confidence interval, for results over seeds.

Pure functions on plain sequences; scipy is imported only where the t-distribution is needed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

# Sign-flip permutations are enumerated exactly up to this many queries (2**16 = 65,536 rows).
EXACT_RANDOMIZATION_MAX_QUERIES = 16


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test of mean(a - b) = 0.

    Degenerate cases get their limits instead of NaN: identical systems (every difference 0) give
    p = 1, a constant non-zero difference (zero variance) gives p = 0.
    """
    diffs = _differences(a, b)
    if len(diffs) < 2:
        raise ValueError(f"a paired t-test expects at least 2 paired values, but got {len(diffs)}")
    mean, sd = float(diffs.mean()), float(diffs.std(ddof=1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    from scipy import stats

    t = mean / (sd / math.sqrt(len(diffs)))
    return float(2.0 * stats.t.sf(abs(t), df=len(diffs) - 1))


def randomization_test(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of the paired randomization (sign-flip permutation) test of mean(a - b) = 0.

    Under the null hypothesis each query's two values are exchangeable, so every difference's sign
    is a coin flip. Up to EXACT_RANDOMIZATION_MAX_QUERIES queries every sign pattern is enumerated
    (an exact p-value); above, `n_resamples` random patterns are drawn and the p-value is
    (1 + hits) / (1 + n_resamples), which is never 0.
    """
    diffs = _differences(a, b)
    if len(diffs) == 0:
        raise ValueError("a randomization test expects at least 1 paired value, but got 0")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, but got {n_resamples}")
    observed = abs(diffs.mean())
    # Compare with a tolerance: sums of the same numbers in another order differ in the last bits.
    tolerance = 1e-12 * max(1.0, float(np.abs(diffs).sum()))
    if len(diffs) <= EXACT_RANDOMIZATION_MAX_QUERIES:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(diffs))))
        hits = int(np.sum(np.abs(signs @ diffs) / len(diffs) >= observed - tolerance))
        return hits / len(signs)
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(n_resamples, len(diffs)))
    hits = int(np.sum(np.abs(signs @ diffs) / len(diffs) >= observed - tolerance))
    return (1 + hits) / (1 + n_resamples)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: reject where adjusted p < alpha.

    The i-th smallest p (0-based) is multiplied by (m - i); adjusted values never decrease along
    the sorted order and are capped at 1.
    """
    m = len(p_values)
    for p in p_values:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must be in [0, 1], but got {p}")
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def mean_ci(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the t-distribution confidence interval; the half-width is NaN for n < 2."""
    if not values:
        raise ValueError("mean_ci expects at least 1 value, but got none")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), but got {confidence}")
    data = np.asarray(values, dtype=np.float64)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, math.nan
    from scipy import stats

    t = stats.t.ppf(0.5 + confidence / 2.0, df=len(data) - 1)
    return mean, float(t * data.std(ddof=1) / math.sqrt(len(data)))


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    if len(a) != len(b):
        raise ValueError(f"paired tests expect two equally long sequences, but got {len(a)} and {len(b)} values")
    return np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
