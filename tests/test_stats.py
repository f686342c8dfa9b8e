"""Tests of adabench.analysis.stats on synthetic data whose answers are known.

The calibration tests (test size, CI coverage, family-wise error) simulate a few hundred experiments with
fixed seeds and check the observed rate against a binomial interval around the stated rate, wide
enough (99.9 %) that a correct method essentially never fails, narrow enough to catch a broken one.
"""
import gc
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from scipy.optimize import brentq
from statsmodels.stats.multitest import multipletests

from adabench.analysis.stats import (
    area_under_curve,
    bootstrap_mean_ci,
    difference_bounds,
    gap_share,
    holm,
    minimum_detectable_difference,
    paired_comparisons,
    performance_profile,
    summarize,
    t_mean_ci,
    time_to_target,
)

# Every function promises no warnings on edge cases; turn any into a failure.
pytestmark = pytest.mark.filterwarnings("error")

FAST_RESAMPLES = 999  # enough for a test, 10x faster than the default


def binomial_rate_bounds(trials: int, rate: float, level: float = 0.999) -> tuple[float, float]:
    low, high = scipy_stats.binom.interval(level, trials, rate)
    return low / trials, high / trials


def seed_frame(rng, n_seeds: int, effects: dict, seed_sd: float, noise_sd: float) -> pd.DataFrame:
    """One row per (optimizer, seed): a shared per-seed effect (the seed fixes data order and init for
    every optimizer alike) + the optimizer's effect + independent noise."""
    seed_effect = rng.normal(0.0, seed_sd, n_seeds)
    return pd.DataFrame([
        {"optimizer": name, "seed": seed, "test_acc": seed_effect[seed] + effect + rng.normal(0.0, noise_sd)}
        for name, effect in effects.items() for seed in range(n_seeds)
    ])


# --- paired tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["wilcoxon", "permutation"])
def test_paired_test_finds_planted_difference_that_unpaired_test_misses(method):
    rng = np.random.default_rng(7)
    frame = seed_frame(rng, n_seeds=10, effects={"adagrad": 1.0, "sgd": 0.0}, seed_sd=5.0, noise_sd=0.3)
    adagrad = frame.loc[frame.optimizer == "adagrad", "test_acc"].to_numpy()
    sgd = frame.loc[frame.optimizer == "sgd", "test_acc"].to_numpy()
    # Why pairing matters: the seed-to-seed spread (sd 5) swamps a difference of 1 between groups.
    assert scipy_stats.ttest_ind(adagrad, sgd).pvalue > 0.3
    assert scipy_stats.mannwhitneyu(adagrad, sgd).pvalue > 0.3

    # 2**10 resamples make the sign-flip test exact for 10 pairs (fewer would sample flips at random).
    result = paired_comparisons(frame, method=method, n_resamples=2**10)

    (row,) = result.to_dict("records")
    assert (row["optimizer_a"], row["optimizer_b"], row["n_pairs"]) == ("adagrad", "sgd", 10)
    assert row["mean_diff"] == pytest.approx(np.mean(adagrad - sgd))
    assert row["ci_low"] < 1.0 < row["ci_high"] and row["ci_low"] > 0
    # 10 pairs all favouring adagrad: the smallest p-value the tests can give, 2 / 2**10.
    assert row["p_value"] == pytest.approx(2 / 2**10)
    assert row["significant"]


def test_reference_comparisons_flag_only_the_planted_difference():
    rng = np.random.default_rng(3)
    effects = {"adagrad": 1.0, "sgd": 0.0, "adam": 0.0, "rmsprop": 0.0}
    frame = seed_frame(rng, n_seeds=12, effects=effects, seed_sd=5.0, noise_sd=0.3)

    result = paired_comparisons(frame, reference="sgd", n_resamples=FAST_RESAMPLES)

    assert list(result.optimizer_a) == ["adagrad", "adam", "rmsprop"]
    assert set(result.optimizer_b) == {"sgd"}
    assert list(result.significant) == [True, False, False]


@pytest.mark.parametrize("method", ["wilcoxon", "permutation"])
def test_rejection_rate_under_the_null_is_near_alpha(method):
    rng = np.random.default_rng(11)
    alpha, experiments = 0.05, 300
    rejections = 0
    for _ in range(experiments):
        frame = seed_frame(rng, n_seeds=12, effects={"a": 0.0, "b": 0.0}, seed_sd=5.0, noise_sd=0.3)
        result = paired_comparisons(frame, method=method, alpha=alpha, n_resamples=FAST_RESAMPLES)
        rejections += bool(result.significant.iloc[0])
    low, high = binomial_rate_bounds(experiments, alpha)
    # Both exact tests are discrete and slightly conservative (size a bit under alpha), so the lower
    # bound is the binomial one for alpha itself: still far from 0.
    assert low <= rejections / experiments <= high


def test_holm_controls_family_wise_error_where_raw_p_values_do_not():
    rng = np.random.default_rng(5)
    alpha, experiments = 0.05, 200
    effects = {name: 0.0 for name in ["a", "b", "c", "d"]}  # 6 null comparisons per experiment
    any_raw, any_holm = 0, 0
    # statsmodels' Holm runs gc.collect() on every call: freezing the objects already alive (pytest,
    # pandas, scipy) makes each collection cheap, seconds instead of tens of seconds for this loop.
    gc.freeze()
    try:
        for _ in range(experiments):
            frame = seed_frame(rng, n_seeds=10, effects=effects, seed_sd=1.0, noise_sd=0.3)
            result = paired_comparisons(frame, alpha=alpha, n_resamples=FAST_RESAMPLES)
            any_raw += bool((result.p_value <= alpha).any())
            any_holm += bool(result.significant.any())
    finally:
        gc.unfreeze()
    _, high = binomial_rate_bounds(experiments, alpha)
    assert any_holm / experiments <= high
    assert any_raw / experiments > high  # without correction, 6 tests reject far more often


def test_holm_matches_statsmodels_and_hand_computation():
    p_values = [0.01, 0.04, 0.03, 0.005]
    # By hand: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> raised to 0.06 (monotone).
    expected = [0.03, 0.06, 0.06, 0.02]
    assert holm(p_values) == pytest.approx(expected)
    assert holm(p_values) == pytest.approx(multipletests(p_values, method="holm")[1])
    # NaN (a comparison that could not be tested) stays NaN and does not count as a test.
    with_nan = holm([0.01, np.nan, 0.04, 0.03, 0.005])
    assert np.isnan(with_nan[1])
    assert np.delete(with_nan, 1) == pytest.approx(expected)


def test_holm_in_paired_comparisons_is_monotone_and_not_below_raw():
    rng = np.random.default_rng(2)
    effects = {"a": 0.0, "b": 0.2, "c": 0.5, "d": 1.0}
    frame = seed_frame(rng, n_seeds=8, effects=effects, seed_sd=1.0, noise_sd=0.5)

    result = paired_comparisons(frame, n_resamples=FAST_RESAMPLES)

    assert result.p_holm.to_numpy() == pytest.approx(holm(result.p_value))
    assert (result.p_holm >= result.p_value).all()
    by_raw = result.sort_values("p_value")
    assert by_raw.p_holm.is_monotonic_increasing


def test_paired_comparisons_edge_cases():
    frame = pd.DataFrame({
        "optimizer": ["a"] * 4 + ["b"] * 4 + ["c"],
        "seed": [0, 1, 2, 3, 0, 1, 2, 3, 0],
        "test_acc": [0.9, 0.8, 0.7, np.inf, 0.9, 0.8, 0.7, 0.6, 0.5],  # seed 3 of "a" diverged
    })

    result = paired_comparisons(frame, n_resamples=FAST_RESAMPLES).set_index(["optimizer_a", "optimizer_b"])

    identical = result.loc[("a", "b")]  # same value on every seed both finished
    assert identical.n_pairs == 3 and identical.mean_diff == 0
    assert (identical.ci_low, identical.ci_high, identical.p_value) == (0.0, 0.0, 1.0)
    one_pair = result.loc[("a", "c")]  # only seed 0 in common: no test
    assert one_pair.n_pairs == 1 and math.isnan(one_pair.p_value) and math.isnan(one_pair.p_holm)
    assert math.isnan(one_pair.ci_low) and not one_pair.significant
    # Only the one testable comparison counts for Holm.
    assert identical.p_holm == 1.0

    with pytest.raises(ValueError, match="several rows"):
        paired_comparisons(pd.concat([frame, frame]))
    with pytest.raises(ValueError, match="reference"):
        paired_comparisons(frame, reference="missing")
    with pytest.raises(ValueError, match="method"):
        paired_comparisons(frame, method="ttest")


# --- confidence intervals -----------------------------------------------------------------------

@pytest.mark.parametrize("interval, lower_rate", [
    (t_mean_ci, None),  # exact for normal data: the binomial bounds around 0.95 apply
    (lambda sample: bootstrap_mean_ci(sample, n_resamples=FAST_RESAMPLES, seed=1), 0.88),
], ids=["t", "bootstrap"])
def test_confidence_intervals_cover_the_true_mean_at_about_the_stated_rate(interval, lower_rate):
    rng = np.random.default_rng(13)
    true_mean, samples = 3.0, 400
    covered = 0
    for _ in range(samples):
        low, high = interval(rng.normal(true_mean, 2.0, size=20))
        covered += low <= true_mean <= high
    low_bound, high_bound = binomial_rate_bounds(samples, 0.95)
    # A bootstrap CI of the mean undercovers at n=20 (true rate about 0.93), so only it gets a lower floor.
    assert (lower_rate or low_bound) <= covered / samples <= high_bound


@pytest.mark.parametrize("interval", [t_mean_ci, bootstrap_mean_ci])
def test_interval_edge_cases(interval):
    assert all(math.isnan(bound) for bound in interval([]))
    assert all(math.isnan(bound) for bound in interval([0.7]))
    assert interval([0.7, 0.7, 0.7]) == (0.7, 0.7)
    assert interval([0.7, np.nan, 0.7, np.inf]) == (0.7, 0.7)  # missing / diverged values dropped
    low, high = interval([1.0, 2.0, 3.0, 4.0])
    assert low < 2.5 < high


def test_summarize_reports_both_intervals_per_group():
    frame = pd.DataFrame({"optimizer": ["a"] * 4 + ["b"], "test_acc": [1.0, 2.0, 3.0, 4.0, 0.5]})

    table = summarize(frame, "test_acc", "optimizer", n_resamples=FAST_RESAMPLES).set_index("optimizer")

    a = table.loc["a"]
    assert (a.n, a["mean"], a["std"]) == (4, 2.5, pytest.approx(np.std([1, 2, 3, 4], ddof=1)))
    assert (a.t_low, a.t_high) == pytest.approx(t_mean_ci([1.0, 2.0, 3.0, 4.0]))
    assert (a.boot_low, a.boot_high) == pytest.approx(bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0], n_resamples=FAST_RESAMPLES))
    b = table.loc["b"]  # a single seed: a mean, no spread, no interval
    assert b.n == 1 and b["mean"] == 0.5
    assert all(math.isnan(b[column]) for column in ["std", "t_low", "t_high", "boot_low", "boot_high"])


def test_summarize_gives_identical_seeds_exactly_their_value_and_no_spread():
    # the rotated quadratic's loss: every seed gives this value, whose float mean over 5 copies is one ulp off
    value = 0.22210960410994887
    assert np.mean([value] * 5) != value
    frame = pd.DataFrame({"g": 0, "loss": [value] * 5})

    row = summarize(frame, "loss", "g", n_resamples=FAST_RESAMPLES).iloc[0]

    assert (row["mean"], row["std"], row.t_low, row.t_high) == (value, 0.0, value, value)


# --- curves -------------------------------------------------------------------------------------

def hand_curves() -> pd.DataFrame:
    curves = pd.DataFrame({
        "run_key": ["fast"] * 5 + ["never"] * 3 + ["sparse"] * 3,
        "epoch": [0, 1, 2, 3, 4, 0, 1, 2, 0, 2, 3],
        "val_acc": [0.1, 0.5, 0.7, 0.9, 0.95, 0.1, 0.2, np.nan, 0.0, 1.0, 1.0],
        "val_loss": [2.0, 1.0, 0.5, 0.3, 0.2, 2.0, 1.9, np.nan, 3.0, 0.1, 0.1],
        "time_s": [0.0, 10.0, 20.0, 30.0, 40.0, 0.0, 5.0, 10.0, 0.0, 7.0, 9.0],
    })
    return curves.sample(frac=1.0, random_state=0)  # the functions must not rely on row order


def test_time_to_target_first_epoch_and_seconds():
    result = time_to_target(hand_curves(), "val_acc", target=0.7)

    assert result.loc["fast"].tolist() == [True, 2.0, 20.0]
    assert result.loc["sparse"].tolist() == [True, 2.0, 7.0]
    assert result.loc["never"].tolist() == [False, math.inf, math.inf]  # NaN (diverged) never counts
    assert list(result.columns) == ["reached", "epochs_to_target", "seconds_to_target"]


def test_time_to_target_min_mode():
    result = time_to_target(hand_curves(), "val_loss", target=0.3, mode="min", time_column=None)

    assert result.epochs_to_target.to_dict() == {"fast": 3.0, "never": math.inf, "sparse": 2.0}
    assert "seconds_to_target" not in result


def test_area_under_curve_is_the_average_height():
    areas = area_under_curve(hand_curves(), "val_acc")

    # fast: trapezoids 0.3 + 0.6 + 0.8 + 0.925 = 2.625 over 4 epochs.
    assert areas["fast"] == pytest.approx(2.625 / 4)
    # sparse: evaluations at epochs 0, 2, 3 -> (0 + 1) / 2 * 2 + 1 * 1 = 2 over 3 epochs.
    assert areas["sparse"] == pytest.approx(2 / 3)
    assert math.isnan(areas["never"])  # a diverged (NaN) evaluation
    assert areas.name == "val_acc_auc"


# --- performance profiles -----------------------------------------------------------------------

def test_performance_profile_on_a_hand_table():
    costs = pd.DataFrame(
        {"adagrad": [1.0, 6.0, math.inf], "sgd": [3.0, 3.0, math.inf], "adam": [4.0, math.inf, np.nan]},
        index=pd.Index(["p1", "p2", "unsolved"], name="problem"),
    )
    # Ratios to the best cost: adagrad [1, 2, -], sgd [3, 1, -], adam [4, inf, -]; "unsolved" counts
    # against everyone, so fractions are out of 3.
    expected = {
        ("adagrad", 1.0): 1 / 3, ("adagrad", 2.0): 2 / 3, ("adagrad", 4.0): 2 / 3,
        ("sgd", 1.0): 1 / 3, ("sgd", 2.0): 1 / 3, ("sgd", 4.0): 2 / 3,
        ("adam", 1.0): 0.0, ("adam", 2.0): 0.0, ("adam", 4.0): 1 / 3,
    }

    profile = performance_profile(costs, taus=[1, 2, 4])

    assert list(profile.columns) == ["optimizer", "tau", "fraction"]
    got = profile.set_index(["optimizer", "tau"]).fraction.to_dict()
    assert got == pytest.approx(expected)


def test_performance_profile_rejects_invalid_input():
    with pytest.raises(ValueError, match="positive"):
        performance_profile(pd.DataFrame({"a": [0.0, 1.0]}), taus=[1])
    with pytest.raises(ValueError, match="taus"):
        performance_profile(pd.DataFrame({"a": [1.0]}), taus=[0.5])


# --- bounded metrics ----------------------------------------------------------------------------

def test_t_interval_of_a_bounded_metric_stays_within_its_bounds():
    # four seeds at chance, one trained: the symmetric t interval reaches below 0 unless clipped
    at_chance = [0.1, 0.1, 0.1, 0.1, 0.894]
    unclipped = t_mean_ci(at_chance)
    assert unclipped[0] < 0  # the test can fail: without bounds the interval leaves [0, 1]
    low, high = t_mean_ci(at_chance, bounds=(0.0, 1.0))
    assert (low, high) == (0.0, unclipped[1]) and high <= 1
    # the mirror image: four seeds near 1 and one that collapsed reach past 1
    mirrored = [0.9, 0.9, 0.9, 0.9, 0.106]
    assert t_mean_ci(mirrored)[1] > 1
    low, high = t_mean_ci(mirrored, bounds=(0.0, 1.0))
    assert high == 1.0 and low == t_mean_ci(mirrored)[0]
    # an open side: (0, None) clips only below
    assert t_mean_ci(at_chance, bounds=(0.0, None)) == (0.0, unclipped[1])


def test_bootstrap_and_summarize_clip_to_the_bounds_they_are_given():
    sample = [0.1, 0.1, 0.1, 0.1, 0.894]
    low, high = bootstrap_mean_ci(sample, n_resamples=FAST_RESAMPLES, bounds=(0.15, 0.3))
    assert (low, high) == (0.15, 0.3)  # bounds narrower than the interval: both ends clipped
    frame = pd.DataFrame({"g": 0, "acc": sample})
    row = summarize(frame, "acc", "g", n_resamples=FAST_RESAMPLES, bounds=(0.0, 1.0)).iloc[0]
    assert row.t_low == 0.0 and row.t_high <= 1 and 0 <= row.boot_low <= row.boot_high <= 1
    assert summarize(frame, "acc", "g", n_resamples=FAST_RESAMPLES).iloc[0].t_low < 0
    assert math.isnan(t_mean_ci([0.5], bounds=(0.0, 1.0))[0])  # NaN stays NaN
    with pytest.raises(ValueError, match="bounds"):
        t_mean_ci(sample, bounds=(1.0, 0.0))


def test_paired_differences_are_clipped_to_the_range_a_difference_can_take():
    assert difference_bounds((0.0, 1.0)) == (-1.0, 1.0)
    assert difference_bounds((0.0, None)) == (-math.inf, math.inf) and difference_bounds(None) is None
    frame = pd.DataFrame({"optimizer": ["a"] * 5 + ["b"] * 5, "seed": list(range(5)) * 2,
                          "test_acc": [0.9, 0.95, 0.97, 0.99, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]})
    # bounds narrower than the data only to make the clipping visible
    result = paired_comparisons(frame, n_resamples=FAST_RESAMPLES, bounds=(0.0, 0.5)).iloc[0]
    assert -0.5 <= result.ci_low <= result.ci_high <= 0.5


# --- power --------------------------------------------------------------------------------------

def detectable_effect_by_hand(n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The standardised effect d at which the two-sided one-sample t-test with n values has the given power: the
    noncentral t with n - 1 degrees of freedom and noncentrality d * sqrt(n) falls beyond +-t_crit that often."""
    df = n - 1
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)

    def shortfall(d):
        nc = d * math.sqrt(n)
        # the lower tail as the upper tail of -T (scipy's nct.cdf gives NaN far out in the lower tail)
        return scipy_stats.nct.sf(critical, df, nc) + scipy_stats.nct.sf(critical, df, -nc) - power

    return brentq(shortfall, 1e-6, 3.5, xtol=1e-12)  # d is 3.26 at n = 3, less from there on


@pytest.mark.parametrize("n", [3, 5, 10])
def test_minimum_detectable_difference_matches_a_hand_power_computation(n):
    differences = np.linspace(-0.01, 0.03, n)
    expected = detectable_effect_by_hand(n) * np.std(differences, ddof=1)
    assert minimum_detectable_difference(differences) == pytest.approx(expected, rel=1e-4)
    # five seeds: 1.68 standard deviations of the differences (Cohen's tables: d = 1.68 at n = 5, 80%, 0.05)
    if n == 5:
        assert minimum_detectable_difference(differences) / np.std(differences, ddof=1) == pytest.approx(1.682,
                                                                                                          abs=1e-3)


def test_minimum_detectable_difference_edge_cases_and_its_column():
    assert math.isnan(minimum_detectable_difference([0.1]))
    assert minimum_detectable_difference([0.1, 0.1, 0.1]) == 0.0  # no spread: any difference is seen
    assert minimum_detectable_difference([0.1, np.nan, 0.3, np.inf, 0.2]) == pytest.approx(
        detectable_effect_by_hand(3) * 0.1, rel=1e-4)  # non-finite differences dropped first
    frame = pd.DataFrame({"optimizer": ["a"] * 5 + ["b"] * 5, "seed": list(range(5)) * 2,
                          "test_acc": [0.80, 0.82, 0.81, 0.85, 0.79, 0.80, 0.80, 0.80, 0.83, 0.80]})
    row = paired_comparisons(frame, n_resamples=FAST_RESAMPLES).iloc[0]
    differences = np.array([0.0, 0.02, 0.01, 0.02, -0.01])
    assert row.mde == pytest.approx(detectable_effect_by_hand(5) * np.std(differences, ddof=1), rel=1e-4)
    assert list(paired_comparisons(frame, n_resamples=FAST_RESAMPLES).columns[-3:]) == ["t_p_holm", "t_significant",
                                                                                          "mde"]


# --- the share of a gap that tuning removes -------------------------------------------------------

def test_gap_share_point_estimate_is_the_hand_computation_and_its_ci_contains_it():
    reference = np.array([0.10, 0.12, 0.08, 0.11, 0.09, 0.10])  # optimizer minus adagrad, per seed
    tuned = np.array([0.02, 0.01, 0.03, 0.02, 0.00, 0.02])
    result = gap_share(reference, tuned, n_resamples=FAST_RESAMPLES, seed=3)
    assert result["n"] == 6
    assert result["reference_gap"] == pytest.approx(0.10) and result["tuned_gap"] == pytest.approx(0.1 / 6)
    assert result["share"] == pytest.approx(1 - (0.1 / 6) / 0.10)
    assert result["ci_low"] < result["share"] < result["ci_high"] and result["ci_high"] <= 1.1
    assert gap_share(reference, tuned, n_resamples=FAST_RESAMPLES, seed=3) == result  # reproducible


def test_gap_share_resamples_seeds_as_pairs():
    # the tuned gap tracks the reference gap seed by seed (share exactly 0.5 on every seed): resampling seeds as pairs
    # keeps every resample's share at 0.5, resampling the two gaps apart would not
    reference = np.array([0.05, 0.10, 0.20, 0.40, 0.15])
    result = gap_share(reference, reference / 2, n_resamples=FAST_RESAMPLES)
    assert result["share"] == pytest.approx(0.5)
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(0.5), pytest.approx(0.5))


def test_gap_share_edge_cases():
    nothing = gap_share([], [])
    assert nothing["n"] == 0 and math.isnan(nothing["share"]) and math.isnan(nothing["ci_low"])
    one = gap_share([0.1, np.nan], [0.05, 0.0])  # the second seed has no reference difference: dropped
    assert one["n"] == 1 and one["share"] == pytest.approx(0.5) and math.isnan(one["ci_low"])
    no_gap = gap_share([0.1, -0.1], [0.05, 0.0], n_resamples=FAST_RESAMPLES)
    assert no_gap["reference_gap"] == 0 and math.isnan(no_gap["share"]) and math.isnan(no_gap["ci_low"])
    with pytest.raises(ValueError, match="one difference per seed"):
        gap_share([0.1, 0.2], [0.1])
