"""The statistics on constructed data whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from study.reporting.stats import holm, mean_ci, paired_t_test, randomization_test


def _queries(n: int, seed: int = 0) -> list[float]:
    return list(np.random.default_rng(seed).uniform(0.2, 0.8, size=n))


@pytest.mark.parametrize("n", [5, 43])  # exact enumeration and Monte Carlo
def test_identical_systems_give_p_one(n):
    a = _queries(n)
    assert paired_t_test(a, a) == 1.0
    assert randomization_test(a, a) == 1.0


def test_a_constant_shift_gives_a_tiny_p():
    a = _queries(43)
    b = [x + 0.05 for x in a]
    assert paired_t_test(b, a) < 1e-12
    assert randomization_test(b, a, n_resamples=10_000) == pytest.approx(1 / 10_001)  # no resample is as extreme
    # exact, 16 queries: only the all-plus and all-minus sign patterns reach |mean| = 0.05
    assert randomization_test(b[:16], a[:16]) == pytest.approx(2 / 2**16)


def test_randomization_test_exact_small_case():
    # differences (1, 2, 3): sign patterns give |sum| in {6, 4, 2, 0, 0, 2, 4, 6}; two reach 6
    assert randomization_test([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == 0.25
    # differences (1, -1): observed mean 0, which every sign pattern reaches
    assert randomization_test([1.0, 0.0], [0.0, 1.0]) == 1.0


def test_paired_t_test_matches_the_textbook_value():
    # differences (1, 2, 3, 4): mean 2.5, sd 1.2910, t = 3.873 on 3 df -> two-sided p = 0.03047
    assert paired_t_test([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]) == pytest.approx(0.030466, abs=1e-5)


def test_noise_without_a_shift_is_not_significant():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 1, size=200)
    b = a + rng.normal(0, 0.05, size=200)
    assert paired_t_test(a, b) > 0.05 and randomization_test(a, b) > 0.05


def test_holm_adjusts_step_down():
    # sorted p: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> kept at 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []
    with pytest.raises(ValueError, match="p-values must be in \\[0, 1\\], but got 1.5"):
        holm([1.5])


def test_mean_ci_uses_the_t_distribution():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    # sd 1, t(0.975, 2 df) = 4.302653 -> half-width 4.302653 / sqrt(3)
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    mean, half = mean_ci([0.7])
    assert mean == 0.7 and math.isnan(half)


def test_unequal_lengths_are_rejected():
    with pytest.raises(ValueError, match="expect two equally long sequences, but got 2 and 3 values"):
        paired_t_test([1.0, 2.0], [1.0, 2.0, 3.0])
