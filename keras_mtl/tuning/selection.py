"""Which trial a search picks: the one-standard-error rule against the reference.

The reference trial holds the config's own loss weights (equal weights in
every preset) and runs in every search (`keras_mtl.compat.keras_tuner_oracle`).
With `tuning.selection = "one_se"` (the default) the search keeps it unless
the best other trial beats it on the validation objective by more than one
standard error of the difference of their means:

    gain = reference mean - candidate mean      (sign flipped for "max")
    SE   = s * sqrt(1 / n_candidate + 1 / n_reference)

where each mean is over the trial's executions and `s` is the pooled
within-trial standard deviation: the executions' deviations from their own
trial's mean, pooled over every finished trial (degrees of freedom: the sum
of `n - 1`). Pooling assumes the noise is alike across loss weights; it
turns 2 executions per trial into a usable estimate (one trial's own 2 values
give a standard deviation with a single degree of freedom). The executions of
two trials share initialisation seeds but not batch orders, so the SE is the
unpaired one. With Hyperband only trials trained for as many epochs as the
reference's longest are compared. `"best"` picks the best mean, as Keras
Tuner does, and reports the same numbers.

A candidate picked by its best validation score is the luckiest of several
draws, so one SE is a floor, not a guarantee: `benchmarks/bench_tuning.py`
measures what the rule gives on the test split.
"""

import math

SELECTIONS = ("one_se", "best")


def _finished(rows):
    return [
        row
        for row in rows
        if isinstance(row.get("objective"), float) and math.isfinite(row["objective"])
    ]


def _runs(row):
    runs = row.get("objective_runs") or []
    return runs if runs else [row["objective"]]


def pooled_std(rows):
    """`(s, degrees_of_freedom)` of the executions around their trial's mean."""
    squares, freedom = 0.0, 0
    for row in rows:
        runs = _runs(row)
        if len(runs) > 1:
            mean = sum(runs) / len(runs)
            squares += sum((value - mean) ** 2 for value in runs)
            freedom += len(runs) - 1
    if not freedom:
        return None, 0
    return math.sqrt(squares / freedom), freedom


def _better(a, b, direction):
    return a > b if direction == "max" else a < b


def _best(rows, direction):
    best = None
    for row in rows:
        if best is None or _better(row["objective"], best["objective"], direction):
            best = row
    return best


def select_trial(rows, direction, selection="one_se"):
    """The chosen trial of a search, and the numbers behind the choice.

    Args:
        rows: `trial_rows(...)`: each with `trial`, `objective` (the mean),
            `objective_runs` (the executions' values), `reference` (True for
            the reference trial) and, with Hyperband, `epochs`.
        direction: The objective's `"min"` or `"max"`.
        selection: `"one_se"` or `"best"`.

    Returns:
        A dict: `chosen` (a trial id or None), `rule`, `decision` (one
        sentence), and where they exist `reference`, `candidate` (the best
        other trial), their `*_mean`, `*_runs` and `*_se` (s / sqrt(n)),
        `difference` (candidate - reference), `gain` (the difference signed
        so that positive is better), `se_difference`, `pooled_std`,
        `degrees_of_freedom`.
    """
    if selection not in SELECTIONS:
        raise ValueError(
            f"Expected tuning.selection in {list(SELECTIONS)}. "
            f"Received: tuning.selection={selection!r}"
        )
    finished = _finished(rows)
    result = {"chosen": None, "rule": selection}
    if not finished:
        return {**result, "decision": "No trial finished."}
    best = _best(finished, direction)
    references = [row for row in finished if row.get("reference")]
    if not references:
        return {
            **result,
            "chosen": best["trial"],
            "decision": f"No reference trial finished: trial {best['trial']}, "
            "the best by the objective.",
        }
    reference = max(references, key=lambda row: row.get("epochs") or 0)
    budget = reference.get("epochs")
    candidates = [
        row
        for row in finished
        if not row.get("reference") and row.get("epochs") == budget
    ]
    std, freedom = pooled_std(finished)
    result.update(
        reference=reference["trial"],
        reference_mean=reference["objective"],
        reference_runs=_runs(reference),
        pooled_std=std,
        degrees_of_freedom=freedom,
    )
    n_reference = len(_runs(reference))
    result["reference_se"] = None if std is None else std / math.sqrt(n_reference)
    candidate = _best(candidates, direction)
    if candidate is None:
        return {
            **result,
            "chosen": reference["trial"],
            "decision": "Only the reference trial finished: keep it.",
        }
    n_candidate = len(_runs(candidate))
    difference = candidate["objective"] - reference["objective"]
    gain = difference if direction == "max" else -difference
    se_difference = (
        None if std is None else std * math.sqrt(1 / n_candidate + 1 / n_reference)
    )
    result.update(
        candidate=candidate["trial"],
        candidate_mean=candidate["objective"],
        candidate_runs=_runs(candidate),
        candidate_se=None if std is None else std / math.sqrt(n_candidate),
        difference=difference,
        gain=gain,
        se_difference=se_difference,
    )
    if selection == "best":
        chosen = best["trial"]
        decision = f"Best objective (tuning.selection='best'): trial {chosen}."
    elif se_difference is None:
        chosen = reference["trial"]
        decision = (
            "Keep the reference: one execution per trial gives no spread to "
            "compare with (set tuning.executions_per_trial >= 2)."
        )
    elif gain > se_difference:
        chosen = candidate["trial"]
        decision = (
            f"Trial {chosen}: it beats the reference by {gain:.4g}, more than "
            f"one standard error ({se_difference:.4g})."
        )
    else:
        chosen = reference["trial"]
        verdict = (
            f"beats it by {gain:.4g}, not by more than one standard error "
            f"({se_difference:.4g})"
            if gain > 0
            else f"does not beat it (worse by {-gain:.4g}; one standard error: "
            f"{se_difference:.4g})"
        )
        decision = (
            f"Keep the reference (trial {chosen}): the best candidate, trial "
            f"{candidate['trial']}, {verdict}."
        )
    return {**result, "chosen": chosen, "decision": decision}


def decision_markdown(selection, objective):
    """The decision as a small Markdown table and its sentence."""
    if "reference" not in selection:
        return f"**Decision ({selection['rule']}):** {selection['decision']}\n"

    def cell(mean_key, se_key):
        mean, se = selection.get(mean_key), selection.get(se_key)
        if mean is None:
            return ""
        return f"{mean:.4g}" + ("" if se is None else f" +- {se:.2g}")

    lines = [
        f"| | trial | {objective} (mean +- SE over executions) |",
        "|---|---|---|",
        f"| reference (config's weights) | {selection['reference']} | "
        f"{cell('reference_mean', 'reference_se')} |",
    ]
    if "candidate" in selection:
        se = selection["se_difference"]
        lines += [
            f"| best candidate | {selection['candidate']} | "
            f"{cell('candidate_mean', 'candidate_se')} |",
            f"| difference (candidate - reference) | | "
            f"{selection['difference']:+.4g}"
            + ("" if se is None else f" +- {se:.2g}")
            + " |",
        ]
    lines += ["", f"**Decision ({selection['rule']}):** {selection['decision']}"]
    return "\n".join(lines) + "\n"
