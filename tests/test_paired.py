"""paired_difference: the paired t interval and p-value, against scipy's."""

import numpy as np
import pytest
from scipy import stats

from keras_mtl.evaluation.paired import format_difference, paired_difference


@pytest.mark.parametrize("n", [2, 5, 9])
def test_interval_and_p_value_match_scipy(n):
    rng = np.random.default_rng(n)
    first = rng.normal(0.8, 0.02, n)
    second = first + rng.normal(0.01, 0.01, n)
    result = paired_difference(first, second)
    differences = second - first
    low, high = stats.t.interval(
        0.95, n - 1, loc=differences.mean(), scale=stats.sem(differences)
    )
    assert result["mean"] == pytest.approx(differences.mean())
    assert result["std"] == pytest.approx(differences.std(ddof=1))
    assert (result["low"], result["high"]) == pytest.approx((low, high))
    assert result["p_value"] == pytest.approx(stats.ttest_rel(second, first).pvalue)
    assert result["significant"] == (low > 0 or high < 0)
    assert result["significant"] == (result["p_value"] < 0.05)
    wide = paired_difference(first, second, confidence=0.99)
    assert wide["low"] < result["low"] and wide["high"] > result["high"]


def test_significance_follows_the_sign_and_the_spread():
    better = paired_difference([1.0, 2.0, 3.0, 4.0, 5.0], [1.5, 2.4, 3.6, 4.5, 5.4])
    assert better["significant"] and better["low"] > 0
    noisy = paired_difference([1.0, 2.0, 3.0, 4.0, 5.0], [1.5, 1.6, 3.6, 3.5, 5.4])
    assert not noisy["significant"] and noisy["low"] < 0 < noisy["high"]
    assert format_difference(better).endswith(" *")
    assert "[" in format_difference(noisy) and "*" not in format_difference(noisy)


def test_one_seed_has_no_interval_and_bad_input_is_refused():
    single = paired_difference([1.0], [2.0])
    assert single["mean"] == 1.0 and single["low"] is None
    assert not single["significant"]
    with pytest.raises(ValueError, match="same number of seeds"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_difference([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference([1.0, 2.0], [1.0, 2.0], confidence=95)
