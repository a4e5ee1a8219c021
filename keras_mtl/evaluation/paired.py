"""Paired differences over seeds: mean, standard deviation and a t interval.

Two settings trained with the same seeds (seed s gives both the same split,
initialisation and shuffle order) are compared seed by seed: the differences
`second[s] - first[s]` are one sample, and Student's t gives a confidence
interval for their mean (scipy.stats.t; the two-sided p-value is
`scipy.stats.ttest_rel`'s). Pairing removes what the two settings share (an
easy split, a lucky initialisation), so it tells settings apart with fewer
seeds than comparing two means does.

A difference is *significant* when its interval excludes zero; with one seed
there is no interval and nothing is significant.

Example:

```python
difference = paired_difference([0.80, 0.82, 0.79], [0.81, 0.84, 0.80])
difference["mean"], difference["low"], difference["high"], difference["significant"]
```
"""

import math

import numpy as np


def paired_difference(first, second, confidence=0.95):
    """`second - first` seed by seed: its mean, sd and a t interval.

    Args:
        first: One value per seed.
        second: One value per seed, in the same seed order.
        confidence: The interval's coverage, in (0, 1).

    Returns:
        A dict: `mean`, `std` (sample standard deviation of the differences,
        None for one seed), `low`, `high` (the interval, None for one seed),
        `p_value` (two-sided, of the paired t test; None for one seed),
        `n`, `confidence`, and `significant` (the interval excludes 0;
        also under the older name `excludes_zero`).

    Raises:
        ValueError: The lists differ in length, are empty, or hold a
            non-finite value, or `confidence` is not in (0, 1).
    """
    from scipy import stats

    first = np.asarray(first, float).reshape(-1)
    second = np.asarray(second, float).reshape(-1)
    if len(first) != len(second) or not len(first):
        raise ValueError(
            "Expected one value per seed in both settings, the same number of "
            f"seeds in each. Received: {len(first)} and {len(second)} values"
        )
    if not (np.isfinite(first).all() and np.isfinite(second).all()):
        raise ValueError(
            "Expected finite values. Received: "
            f"first={first.tolist()}, second={second.tolist()}"
        )
    if not 0 < confidence < 1:
        raise ValueError(
            f"Expected a confidence in (0, 1), e.g. 0.95. Received: {confidence}"
        )
    differences = second - first
    n = len(differences)
    mean = float(differences.mean())
    result = {
        "mean": mean,
        "std": None,
        "low": None,
        "high": None,
        "p_value": None,
        "n": n,
        "confidence": confidence,
        "significant": False,
    }
    if n < 2:
        result["excludes_zero"] = False
        return result
    std = float(differences.std(ddof=1))
    if std == 0.0:
        # Identical differences: the interval is the point, and it is
        # significant unless that point is 0.
        low = high = mean
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        half = stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n)
        low, high = mean - half, mean + half
        t_statistic = mean / (std / math.sqrt(n))
        p_value = float(2 * stats.t.sf(abs(t_statistic), df=n - 1))
    significant = bool(low > 0 or high < 0)
    result.update(
        std=std,
        low=float(low),
        high=float(high),
        p_value=p_value,
        significant=significant,
        excludes_zero=significant,
    )
    return result


def format_difference(difference, digits=2, unit=""):
    """`+1.23 [+0.40, +2.06] *`: the mean, its interval, `*` if significant."""
    text = f"{difference['mean']:+.{digits}f}{unit}"
    if difference["low"] is not None:
        text += f" [{difference['low']:+.{digits}f}, {difference['high']:+.{digits}f}]"
    return text + (" *" if difference["significant"] else "")
