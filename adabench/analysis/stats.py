"""Statistics of a fair optimizer comparison: confidence intervals, paired tests, curve summaries, profiles.

Everything takes pandas objects and leans on scipy / statsmodels for the statistics themselves. The
conventions of the means, intervals and tests:

* Non-finite values -- NaN (missing) or +-inf (a diverged run's loss) -- are dropped before a mean, a CI
  or a test, and counts (``n``, ``n_pairs``) say how many values were used: report diverged seeds
  separately (or encode them as a finite worst value before calling) rather than averaging them in.
* Too little data gives NaN, never an exception or a warning: a CI needs at least two values, a test at
  least two pairs. Values that are all equal give the degenerate interval ``(v, v)``.
* Randomness (bootstrap resamples, random sign flips) comes from ``numpy.random.default_rng(seed)``,
  so every result is reproducible.
* Bounded metrics: where a caller passes ``bounds=(low, high)`` (a metric's declared range, e.g. (0, 1) for an
  accuracy; None or an infinity for an open side), an interval is clipped to it. A t interval is symmetric about the
  mean and knows nothing of bounds: five accuracies at chance and one trained seed give a lower end below 0.
"""
from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

PAIRED_METHODS = ("wilcoxon", "permutation", "bootstrap")


def _finite_sample(values) -> np.ndarray:
    """The finite values as a float array (see the module doc)."""
    sample = np.asarray(values, dtype=float).ravel()
    return sample[np.isfinite(sample)]


def clip_interval(low: float, high: float, bounds=None) -> tuple[float, float]:
    """``(low, high)`` clipped to ``bounds = (lower, upper)`` (None, or None / an infinity on a side: no bound
    there); NaN stays NaN."""
    if bounds is None:
        return (low, high)
    lower, upper = (-np.inf if bounds[0] is None else bounds[0]), (np.inf if bounds[1] is None else bounds[1])
    if lower > upper:
        raise ValueError(f"bounds {bounds} are not (low, high)")
    clip = lambda value: value if np.isnan(value) else float(min(max(value, lower), upper))  # noqa: E731
    return (clip(low), clip(high))


def difference_bounds(bounds=None):
    """The range of a difference of two values within ``bounds``: (low - high, high - low); None if unbounded."""
    if bounds is None:
        return None
    lower, upper = (-np.inf if bounds[0] is None else bounds[0]), (np.inf if bounds[1] is None else bounds[1])
    return (lower - upper, upper - lower)


def _degenerate_interval(sample: np.ndarray) -> tuple[float, float] | None:
    """The interval for samples the CI routines cannot handle (n < 2, zero spread), else None."""
    if len(sample) < 2:
        return (np.nan, np.nan)
    if np.all(sample == sample[0]):
        return (float(sample[0]), float(sample[0]))
    return None


def bootstrap_mean_ci(values, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0,
                      method: str = "BCa", bounds=None) -> tuple[float, float]:
    """Bootstrap CI of the mean (``scipy.stats.bootstrap``; ``method`` is "BCa" or "percentile"), clipped to
    ``bounds = (low, high)`` where given (the values' declared range; see the module doc).

    Bootstrap intervals of a mean are somewhat too narrow for small samples (coverage about 0.93 at
    n = 20 for a nominal 0.95, worse at n = 5): with few seeds prefer :func:`t_mean_ci`.
    Returns ``(nan, nan)`` for fewer than two values and ``(v, v)`` when all values equal ``v``.
    """
    sample = _finite_sample(values)
    degenerate = _degenerate_interval(sample)
    if degenerate is not None:
        return degenerate
    result = stats.bootstrap((sample,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method=method, vectorized=True, rng=np.random.default_rng(seed))
    return clip_interval(float(result.confidence_interval.low), float(result.confidence_interval.high), bounds)


def t_mean_ci(values, confidence: float = 0.95, bounds=None) -> tuple[float, float]:
    """Student-t CI of the mean (``scipy.stats.ttest_1samp(...).confidence_interval``), clipped to
    ``bounds = (low, high)`` where given: the interval is symmetric about the mean, so a skewed sample of a bounded
    metric (four accuracies at chance and one trained seed) reaches past the range the mean can take.

    Exact for normal data at any n, so the better choice for a handful of seeds.
    Returns ``(nan, nan)`` for fewer than two values and ``(v, v)`` when all values equal ``v``.
    """
    sample = _finite_sample(values)
    degenerate = _degenerate_interval(sample)
    if degenerate is not None:
        return degenerate
    interval = stats.ttest_1samp(sample, popmean=0.0).confidence_interval(confidence_level=confidence)
    return clip_interval(float(interval.low), float(interval.high), bounds)


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (``statsmodels`` ``multipletests(method="holm")``); NaN entries stay NaN
    and do not count as tests."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = ~np.isnan(p)
    if tested.sum() == 1:
        # One test needs no correction; skipping statsmodels here also skips the gc.collect() its Holm
        # branch runs on every call (tens of ms in a large process, which adds up over many calls).
        adjusted[tested] = p[tested]
    elif tested.any():
        adjusted[tested] = multipletests(p[tested], method="holm")[1]
    return adjusted


def _mean_statistic(differences, axis):
    return np.mean(differences, axis=axis)


def paired_p_value(differences: np.ndarray, method: str = "wilcoxon", n_resamples: int = 9999,
                   seed: int = 0) -> float:
    """Two-sided p-value for "the paired differences are centred on zero": ``method`` "wilcoxon", else the
    sign-flip permutation test (see :func:`paired_comparisons`)."""
    if len(differences) < 2:
        return np.nan
    if np.all(differences == 0):
        return 1.0  # identical results on every seed: no evidence of a difference
    if method == "wilcoxon":
        return float(stats.wilcoxon(differences).pvalue)
    # One sample with permutation_type="samples" flips the sign of each difference: the paired
    # permutation test, exact (all 2**n flips) when n_resamples >= 2**n.
    result = stats.permutation_test((differences,), _mean_statistic, permutation_type="samples",
                                    vectorized=True, n_resamples=n_resamples, rng=np.random.default_rng(seed))
    return float(result.pvalue)


def paired_comparisons(frame: pd.DataFrame, value: str = "test_acc", by: str = "optimizer",
                       pair_on: str = "seed", reference=None, method: str = "wilcoxon", alpha: float = 0.05,
                       confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0,
                       bounds=None) -> pd.DataFrame:
    """Paired comparison of every two groups of ``by`` (or of each group against ``reference``).

    ``frame`` holds one row per (``by``, ``pair_on``) -- e.g. the final test accuracy of each
    optimizer on each seed, for one problem. Two optimizers are compared on the seeds both have
    (a finite ``value`` on both), through the differences ``a - b``:

    * ``mean_diff`` and a paired bootstrap CI of it (``ci_low``, ``ci_high``; :func:`bootstrap_mean_ci`), clipped
      to the range a difference of two values within ``bounds`` can take, (low - high, high - low), where given;
    * ``p_value``, two-sided: ``method="wilcoxon"`` is ``scipy.stats.wilcoxon`` on the differences
      (exact for up to 50 distinct differences, by permutation for up to 13 with ties; zero differences
      are dropped first, scipy's default, so they lower the effective n);
      ``method="permutation"`` (alias ``"bootstrap"``) is the paired sign-flip permutation test of the
      mean difference (``scipy.stats.permutation_test``, ``permutation_type="samples"``), exact when
      ``n_resamples >= 2**n_pairs``;
    * ``p_holm``: Holm-adjusted across all comparisons in the result, and
      ``significant = p_holm <= alpha``;
    * beside them, always, the paired t-test of the same differences (:func:`paired_t_p_value`): ``t_p_value``,
      ``t_p_holm`` (Holm over the result) and ``t_significant``. It assumes normal differences, which a handful of
      seeds cannot check, but it has no resolution floor.
    * ``mde``: the smallest true mean difference that paired t-test would detect with 80% power at ``alpha``, with
      these ``n_pairs`` and the spread of these differences (:func:`minimum_detectable_difference`): where no test
      separates two optimizers, a difference smaller than ``mde`` could not have been detected.

    Resolution floor: both tests are discrete, and with ``n`` pairs their smallest two-sided p-value is
    ``2 / 2**n``: 0.0625 at n = 5, so five seeds can NEVER reject at alpha = 0.05; n = 6 gives 0.03125.
    Holm multiplies the smallest p-value by the number of comparisons, so k comparisons need
    ``2 / 2**n * k <= alpha`` (e.g. k = 3 needs n >= 7 seeds).

    Edge cases: fewer than two pairs gives ``p_value = NaN`` (no test; not counted by Holm,
    ``significant`` False) and a NaN CI; differences that are all zero give ``p_value = 1.0`` and the
    CI ``(0, 0)``.

    Returns one row per comparison: ``optimizer_a, optimizer_b, n_pairs, mean_diff, ci_low, ci_high,
    p_value, p_holm, significant, t_p_value, t_p_holm, t_significant, mde`` (with ``reference``, ``optimizer_b`` is
    always the reference).
    Groups are taken in order of first appearance.
    """
    if method not in PAIRED_METHODS:
        raise ValueError(f"method must be one of {PAIRED_METHODS}, not {method!r}")
    duplicated = frame.duplicated([by, pair_on])
    if duplicated.any():
        raise ValueError(f"several rows per ({by}, {pair_on}), e.g. "
                         f"{frame.loc[duplicated, [by, pair_on]].iloc[0].tolist()}; select one problem/setting first")
    table = frame.pivot(index=pair_on, columns=by, values=value)
    groups = list(dict.fromkeys(frame[by]))
    if reference is None:
        pairs = list(itertools.combinations(groups, 2))
    else:
        if reference not in groups:
            raise ValueError(f"reference {reference!r} is not a value of {by!r}")
        pairs = [(group, reference) for group in groups if group != reference]

    rows = []
    for a, b in pairs:
        both = table[[a, b]]
        both = both[np.isfinite(both).all(axis=1)]
        differences = (both[a] - both[b]).to_numpy(dtype=float)
        low, high = bootstrap_mean_ci(differences, confidence, n_resamples, seed, bounds=difference_bounds(bounds))
        rows.append({
            "optimizer_a": a, "optimizer_b": b, "n_pairs": len(differences),
            "mean_diff": float(np.mean(differences)) if len(differences) else np.nan,
            "ci_low": low, "ci_high": high,
            "p_value": paired_p_value(differences, method, n_resamples, seed),
            "t_p_value": paired_t_p_value(differences),
            "mde": minimum_detectable_difference(differences, alpha),
        })
    result = pd.DataFrame(rows, columns=["optimizer_a", "optimizer_b", "n_pairs", "mean_diff", "ci_low",
                                         "ci_high", "p_value", "t_p_value", "mde"])
    result.insert(result.columns.get_loc("t_p_value"), "p_holm", holm(result["p_value"]))
    result.insert(result.columns.get_loc("t_p_value"), "significant", result["p_holm"] <= alpha)  # NaN compares False
    result.insert(result.columns.get_loc("mde"), "t_p_holm", holm(result["t_p_value"]))
    result.insert(result.columns.get_loc("mde"), "t_significant", result["t_p_holm"] <= alpha)
    return result


# the power at which a difference counts as detectable: the conventional 80%
DETECTION_POWER = 0.8


@functools.cache
def _detectable_effect_size(n: int, alpha: float, power: float) -> float:
    """The standardised effect (mean / SD of the differences) the two-sided one-sample t-test detects with
    ``power`` at ``alpha`` with ``n`` values (statsmodels ``TTestPower``; the same n recurs in every table)."""
    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                          alternative="two-sided"))


def minimum_detectable_difference(differences, alpha: float = 0.05, power: float = DETECTION_POWER) -> float:
    """The smallest true mean of the paired differences that the paired t-test (:func:`paired_t_p_value`) rejects
    with probability ``power`` at ``alpha``, given their number n and their SD s (ddof 1): d(n) * s, d(n) the
    standardised effect the test detects at that n. Taking the observed s for the true one makes it an estimate.
    NaN for fewer than two finite differences; 0 where they do not vary (then any difference is seen)."""
    sample = _finite_sample(differences)
    if len(sample) < 2:
        return np.nan
    spread = _mean_and_std(sample)["std"]
    return 0.0 if spread == 0 else _detectable_effect_size(len(sample), alpha, power) * spread


def paired_t_p_value(differences: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test (``scipy.stats.ttest_1samp`` of the differences against 0): exact
    if the differences are normal, and not bounded below as the rank tests are (it can reject with 5 seeds)."""
    if len(differences) < 2:
        return np.nan
    if np.all(differences == 0):
        return 1.0
    if np.all(differences == differences[0]):
        return 0.0  # the same nonzero difference on every seed: no spread, the t statistic is infinite
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def time_to_target(curves: pd.DataFrame, metric: str, target: float, mode: str = "max", unit: str = "epoch",
                   time_column: str | None = "time_s", run_column: str = "run_key") -> pd.DataFrame:
    """Per run, when ``metric`` first reaches ``target`` (``>=`` for mode "max", ``<=`` for "min").

    ``curves`` is long: one row per run and evaluation (``run_column``, ``unit``, ``metric``, ``time_column``),
    in any order. Returns a frame indexed by run with ``reached`` (bool), ``<unit>s_to_target`` (the first
    ``unit`` value at which the target holds) and, unless ``time_column`` is None, ``seconds_to_target``
    (its ``time_column`` value). Both are ``inf`` for a run that never reaches the target, so they can be
    used as costs directly (:func:`performance_profile`). A NaN metric (a diverged evaluation) never
    reaches the target.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    ordered = curves.sort_values([run_column, unit])
    hits = ordered[metric] >= target if mode == "max" else ordered[metric] <= target
    first_hit = ordered[hits].drop_duplicates(run_column).set_index(run_column)
    runs = pd.Index(ordered[run_column].unique(), name=run_column)
    result = pd.DataFrame(index=runs)
    result["reached"] = runs.isin(first_hit.index)
    columns = {f"{unit}s_to_target": unit}
    if time_column is not None:
        columns["seconds_to_target"] = time_column
    for name, source in columns.items():
        result[name] = first_hit[source].reindex(runs).astype(float).where(result["reached"], np.inf)
    return result


def area_under_curve(curves: pd.DataFrame, metric: str, unit: str = "epoch",
                     run_column: str = "run_key") -> pd.Series:
    """Per run, the normalised area under the ``metric`` curve: ``numpy.trapezoid`` over ``unit`` divided
    by the run's span of ``unit`` -- the curve's average height, on the metric's own scale.

    A single number for a whole validation curve (rewards reaching a level early and staying there).
    Runs with fewer than two evaluations, or with a NaN metric anywhere (a diverged run), give NaN.
    Runs of different lengths are each averaged over their own span.
    Returns a Series indexed by run, named ``<metric>_auc``.
    """
    areas = {}
    for key, run in curves.sort_values([run_column, unit]).groupby(run_column, sort=False):
        x = run[unit].to_numpy(dtype=float)
        y = run[metric].to_numpy(dtype=float)
        span = x[-1] - x[0]
        areas[key] = np.trapezoid(y, x) / span if len(x) >= 2 and span > 0 else np.nan
    return pd.Series(areas, name=f"{metric}_auc", dtype=float).rename_axis(run_column)


def performance_profile(costs: pd.DataFrame, taus: Iterable[float]) -> pd.DataFrame:
    """Dolan-More performance profile (as used by AlgoPerf).

    ``costs``: one row per problem, one column per optimizer, each a positive cost (e.g. seconds to
    target); ``inf`` or NaN means not solved. For each optimizer and ``tau >= 1``, the fraction of ALL
    problems on which its cost is ``<= tau * (best cost on that problem)``. A problem that no optimizer
    solves counts as unsolved for every optimizer (it stays in the denominator).
    Returns a long frame with columns ``optimizer, tau, fraction``.
    """
    costs = costs.astype(float).fillna(np.inf)
    if (costs <= 0).any().any():
        raise ValueError("costs must be positive (a ratio to the best cost is taken)")
    taus = [float(tau) for tau in taus]
    if any(tau < 1 for tau in taus):
        raise ValueError("taus must be >= 1")
    best = costs.min(axis=1)
    solvable = np.isfinite(best)
    rows = []
    for tau in taus:
        within = costs.le(tau * best, axis=0) & solvable.to_numpy()[:, None]
        for optimizer, fraction in within.mean(axis=0).items():
            rows.append({"optimizer": optimizer, "tau": tau, "fraction": float(fraction)})
    return pd.DataFrame(rows, columns=["optimizer", "tau", "fraction"])


def _mean_and_std(sample: np.ndarray) -> dict:
    """Mean and std (ddof 1); identical values give exactly (v, 0). np.mean of five copies of v can be one ulp
    off v, and the std of such a sample then comes out about 1e-17 instead of 0."""
    if len(sample) == 0:
        return {"mean": np.nan, "std": np.nan}
    if np.all(sample == sample[0]):
        return {"mean": float(sample[0]), "std": 0.0 if len(sample) >= 2 else np.nan}
    return {"mean": float(np.mean(sample)), "std": float(np.std(sample, ddof=1)) if len(sample) >= 2 else np.nan}


def summarize(frame: pd.DataFrame, value: str, by, confidence: float = 0.95, n_resamples: int = 9999,
              seed: int = 0, bounds=None) -> pd.DataFrame:
    """Per group of ``by`` (a column or list of columns): ``n, mean, std`` (ddof 1), the t-CI
    (``t_low, t_high``) and the bootstrap CI (``boot_low, boot_high``) of the mean of ``value``, both clipped to
    ``bounds = (low, high)`` where given (``value``'s declared range: an accuracy's CI stays within [0, 1]).

    Non-finite values are dropped (``n`` counts the rest). Returns a flat frame with the ``by`` columns first.
    """
    keys = [by] if isinstance(by, str) else list(by)
    rows = []
    for group, part in frame.groupby(keys, sort=False, observed=True):
        sample = _finite_sample(part[value])
        t_low, t_high = t_mean_ci(sample, confidence, bounds)
        boot_low, boot_high = bootstrap_mean_ci(sample, confidence, n_resamples, seed, bounds=bounds)
        rows.append({
            **dict(zip(keys, group)), "n": len(sample), **_mean_and_std(sample),
            "t_low": t_low, "t_high": t_high, "boot_low": boot_low, "boot_high": boot_high,
        })
    return pd.DataFrame(rows, columns=keys + ["n", "mean", "std", "t_low", "t_high", "boot_low", "boot_high"])


def _gap_share_statistic(reference_differences, tuned_differences, axis=-1):
    """1 - (mean tuned difference) / (mean reference difference), vectorised over resamples; NaN where the
    reference gap is 0 (no gap to remove)."""
    reference_gap = np.mean(reference_differences, axis=axis)
    tuned_gap = np.mean(tuned_differences, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = 1.0 - tuned_gap / reference_gap
    return np.where(reference_gap == 0, np.nan, share)


def gap_share(reference_differences, tuned_differences, confidence: float = 0.95, n_resamples: int = 9999,
              seed: int = 0) -> dict:
    """The share of a gap that tuning removes: ``1 - tuned_gap / reference_gap``, each gap the mean over seeds of
    one optimizer's value minus another's (``*_differences``, one per seed, the same seeds in the same order), with
    a percentile bootstrap CI that resamples seeds: both gaps of a resample come from the same seeds
    (``scipy.stats.bootstrap(paired=True)``), since a seed fixes initial weights and batch order under both
    protocols. Percentile, not BCa: the share is a ratio, whose jackknife (BCa's acceleration) is unstable when
    the reference gap is small.

    1 means tuning closed the gap, 0 that it left it as it was, below 0 that it widened it, above 1 that it
    reversed it. A reference gap near 0 makes the share meaningless (and its CI wide): read the gaps beside it.
    Seeds with a non-finite difference under either protocol are dropped. Returns ``n, reference_gap, tuned_gap,
    share, ci_low, ci_high``; NaN share for no seeds or a reference gap of 0, NaN CI for fewer than two seeds.
    """
    reference = np.asarray(reference_differences, dtype=float).ravel()
    tuned = np.asarray(tuned_differences, dtype=float).ravel()
    if reference.shape != tuned.shape:
        raise ValueError(f"one difference per seed under each protocol: {reference.shape} and {tuned.shape}")
    kept = np.isfinite(reference) & np.isfinite(tuned)
    reference, tuned = reference[kept], tuned[kept]
    result = {"n": len(reference), "reference_gap": np.nan, "tuned_gap": np.nan, "share": np.nan,
              "ci_low": np.nan, "ci_high": np.nan}
    if not len(reference):
        return result
    result.update(reference_gap=float(np.mean(reference)), tuned_gap=float(np.mean(tuned)),
                  share=float(_gap_share_statistic(reference, tuned)))
    if len(reference) < 2 or np.isnan(result["share"]):
        return result
    if np.all(reference == reference[0]) and np.all(tuned == tuned[0]):
        result.update(ci_low=result["share"], ci_high=result["share"])  # every resample gives the same share
        return result
    interval = stats.bootstrap((reference, tuned), _gap_share_statistic, paired=True, vectorized=True,
                               confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                               rng=np.random.default_rng(seed)).confidence_interval
    result.update(ci_low=float(interval.low), ci_high=float(interval.high))
    return result
