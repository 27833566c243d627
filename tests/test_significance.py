"""The paired statistics of gd-torch compare, against hand computations on fixed numbers."""

import itertools
import math

import pytest

from gd_torch.tools.significance import paired_difference

BASELINE = [0.95, 0.96, 0.94, 0.95]
VARIANT = [0.96, 0.98, 0.97, 1.01]  # differences 0.01, 0.02, 0.03, 0.06


def student_t3_cdf(t: float) -> float:
    """Student's t with 3 degrees of freedom in closed form: ½ + (θ + sin θ cos θ)/π,
    θ = atan(t/√3)."""
    theta = math.atan(t / math.sqrt(3))
    return 0.5 + (theta + math.sin(theta) * math.cos(theta)) / math.pi


def test_paired_t_interval_and_p_value_by_hand():
    result = paired_difference(VARIANT, BASELINE)
    # d = 0.01, 0.02, 0.03, 0.06: d̄ = 0.03, Σ(d − d̄)² = 4 + 1 + 0 + 9 = 14 (× 1e-4),
    # s = √(14e-4 / 3) = 0.021602, s/√4 = 0.010801; t_{0.975, 3} = 3.182446 (the t table)
    assert (result.count, result.wins) == (4, 4)
    assert result.mean == pytest.approx(0.03)
    assert result.std == pytest.approx(math.sqrt(14e-4 / 3))
    half_width = 3.182446 * math.sqrt(14e-4 / 3) / 2
    assert result.t_interval == pytest.approx((0.03 - half_width, 0.03 + half_width), rel=1e-6)
    t = 0.03 / (math.sqrt(14e-4 / 3) / 2)  # 2.7775
    assert result.p_value == pytest.approx(2 * (1 - student_t3_cdf(t)), rel=1e-9)
    assert 0.05 < result.p_value < 0.1  # 4 wins of 4, but the spread is wide for 4 seeds


def test_bootstrap_interval_by_enumerating_the_resamples():
    """d = (0, 0, 3): a resample's mean is k, the number of 3s drawn, Binomial(3, 1/3):
    P(0) = 8/27, P(1) = 12/27, P(2) = 6/27, P(3) = 1/27 = 3.7%. The 2.5th percentile is 0 and,
    since P(k ≤ 2) = 26/27 = 96.3% < 97.5%, the 97.5th is 3."""
    result = paired_difference([1.0, 2.0, 6.0], [1.0, 2.0, 3.0])
    assert result.bootstrap_interval == (0.0, 3.0)
    # d = (1, 2): means 1 (¼), 1.5 (½), 2 (¼): the interval is [1, 2]
    assert paired_difference([1.0, 2.0], [0.0, 0.0]).bootstrap_interval == (1.0, 2.0)


def test_the_bootstrap_matches_every_resample_enumerated():
    """Five differences: all 5⁵ = 3125 equally likely resamples enumerated give the exact
    percentiles, which 100,000 seeded resamples reproduce (and reproduce again)."""
    differences = [0.3, -0.1, 0.5, 0.2, 0.9]
    means = sorted(sum(pick) / 5 for pick in itertools.product(differences, repeat=5))
    exact = (means[math.ceil(0.025 * len(means)) - 1], means[math.ceil(0.975 * len(means)) - 1])
    result = paired_difference(differences, [0.0] * 5)
    assert result.bootstrap_interval == pytest.approx(exact, abs=0.021)  # one step between means
    assert result == paired_difference(differences, [0.0] * 5)


def test_pairing_removes_what_the_seed_does_to_both():
    """Seed effects of ±2 points, the same in both: unpaired, the variant's 0.1 would drown; paired,
    every difference is 0.1 exactly."""
    baseline = [0.93, 0.97, 0.95, 0.91, 0.99]
    result = paired_difference([b + 0.1 for b in baseline], baseline)
    assert result.std == pytest.approx(0, abs=1e-12)
    assert result.t_interval == pytest.approx((0.1, 0.1))
    assert result.p_value < 1e-10 and result.wins == 5


def test_no_difference_at_all():
    result = paired_difference([0.9, 0.8], [0.9, 0.8])
    assert (result.mean, result.p_value, result.t_interval) == (0.0, 1.0, (0.0, 0.0))


def test_a_diverged_pair_is_left_out():
    result = paired_difference([0.96, math.nan, 0.97, 0.98], [0.95, 0.95, 0.96, 0.96])
    assert result.count == 3
    assert result.mean == pytest.approx((0.01 + 0.01 + 0.02) / 3)
    single = paired_difference([0.96, math.nan], [0.95, 0.95])
    assert single.count == 1 and math.isnan(single.p_value) and math.isnan(single.t_interval[0])


def test_unpaired_lengths_are_refused():
    with pytest.raises(ValueError, match="pair them by seed"):
        paired_difference([1.0, 2.0], [1.0])
