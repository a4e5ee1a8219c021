"""Multi-task quality on shapes where fine labels are scarce, paired protocol.

    python benchmarks/run_all.py quality_shapes

The protocol of `bench_quality.py` (paired seeds, early stopping on the
unweighted validation loss, learning rate halved on a plateau) on the
embedded shapes dataset: coarse labels (Head 1) on every training image, fine
labels (Head 2) on 5 % and 20 % of them. A CNN step costs 60-85 ms on 2 CPU
cores, so the training split is cut to `MAX_EXAMPLES` images and fewer
methods run than on Adult (`KERAS_MTL_BENCH_METHODS` sets them). No
gradient-boosted trees here: they take table columns, not images.
"""

from bench_quality import PROTOCOL, fractions, methods, run_sections, seeds

MAX_EXAMPLES = 2000


def run(quick=False):
    common = list(PROTOCOL)
    if quick:
        common += ["data.dataset=shapes/tiny", "train.epochs=2", "train.batch_size=64"]
    else:
        common += [f"data.max_examples={MAX_EXAMPLES}", "train.epochs=20"]
    sections, results, budget, total = run_sections(
        "shapes",
        common,
        fractions("0.2" if quick else "0.05,0.2"),
        methods("static,uncertainty,famo", quick=quick),
        seeds(quick),
    )
    return {
        "title": "Multi-task quality on shapes with scarce fine labels",
        "markdown": (
            f"{budget} Training split cut to {MAX_EXAMPLES} images.\n\n"
            + "\n\n".join(sections)
            + "\n\nTest-split accuracy of both tasks; delta-m as in the Adult section."
        ),
        "results": results,
        "seconds": total,
    }
