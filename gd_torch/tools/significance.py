"""Is a variant better than the baseline by more than seed noise? Paired statistics over seeds.

Run i of the baseline and run i of a variant share seed i: the same initial weights and the same
batch order. Their difference d_i = variant_i − baseline_i removes what the seed does to both,
so the question is about the n differences alone:

    mean          d̄ = (1/n) Σ_i d_i
    paired t      d̄ ± t_{0.975, n−1} · s/√n, with s² = Σ_i (d_i − d̄)² / (n − 1): the 95% interval
                  when the d_i are roughly normal (Student's t with n − 1 degrees of freedom)
    p-value       2 P(T_{n−1} ≥ |d̄| / (s/√n)): how often a mean difference this far from 0 would
                  appear if the variant changed nothing (the two-sided paired t test)
    bootstrap     the 2.5th and 97.5th percentiles of the mean of n differences drawn from the d_i
                  with replacement, 100,000 times (seeded): no normality assumed, but with few seeds
                  it is narrower than it should be (with 3 seeds only 10 distinct means exist)

An interval that excludes 0 says the change moves the result by more than the seeds do; one that
includes 0 says these seeds cannot tell. More seeds narrow it like 1/√n.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy

CONFIDENCE = 0.95
RESAMPLES = 100_000


@dataclass(frozen=True)
class PairedDifference:
    """variant − baseline over the seeds both finished (finite values)."""

    count: int  # pairs compared
    mean: float  # d̄
    std: float  # s, the sample standard deviation of the d_i (0 for one pair)
    t_interval: tuple[float, float]  # 95%, paired t
    bootstrap_interval: tuple[float, float]  # 95%, percentile bootstrap over the pairs
    p_value: float  # two-sided paired t test of d̄ = 0
    wins: int  # pairs with d_i > 0


def paired_difference(
    variant: Sequence[float],
    baseline: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PairedDifference:
    """The paired difference of two equally long sequences, one value per seed, in seed order.

    Pairs where either value is NaN or infinite (a diverged run) are left out; with fewer than
    two pairs left the intervals and the p-value are NaN.
    """
    from scipy import stats  # a second to import: only when a comparison is reported

    if len(variant) != len(baseline):
        raise ValueError(f"{len(variant)} values against {len(baseline)}: pair them by seed")
    d = numpy.array(
        [v - b for v, b in zip(variant, baseline) if math.isfinite(v) and math.isfinite(b)]
    )
    n = len(d)
    if n < 2:
        mean = float(d.mean()) if n else math.nan
        return PairedDifference(
            n,
            mean,
            0.0 if n else math.nan,
            (math.nan,) * 2,
            (math.nan,) * 2,
            math.nan,
            int((d > 0).sum()),
        )
    mean, std = float(d.mean()), float(d.std(ddof=1))
    standard_error = std / math.sqrt(n)
    half_width = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * standard_error
    if standard_error > 0:
        p_value = float(2 * stats.t.sf(abs(mean) / standard_error, n - 1))
    else:  # every pair differs by the same amount
        p_value = 1.0 if mean == 0 else 0.0
    means = d[numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = numpy.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return PairedDifference(
        n,
        mean,
        std,
        (mean - half_width, mean + half_width),
        (float(low), float(high)),
        p_value,
        int((d > 0).sum()),
    )
