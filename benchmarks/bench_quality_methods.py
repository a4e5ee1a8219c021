"""Every registered loss-weighting method in one quality table (Adult).

    python benchmarks/run_all.py quality_methods

The protocol of `bench_quality` (paired seeds, early stopping on the
unweighted validation loss with the best weights restored, the learning rate
halved on a plateau) with every method of `keras_mtl.config.weighting_methods`
at one label fraction: income (Head 2) labelled on 5 % of the training rows,
marital status on all of them. One table, so that the methods compare on the
same seeds, splits, label draws and initial Trunks.

Environment: `KERAS_MTL_BENCH_SEEDS` (how many seeds, default 5),
`KERAS_MTL_BENCH_METHODS` (default `all`), `KERAS_MTL_BENCH_FRACTIONS`
(default `0.05`).
"""

import bench_quality


def run(quick=False):
    overrides, _ = bench_quality._adult(quick)
    fraction_list = bench_quality.fractions("0.05")
    method_names = bench_quality.methods("static,uncertainty" if quick else "all")
    sections, results, budget, seconds = bench_quality.run_sections(
        "adult",
        overrides,
        fraction_list,
        method_names,
        bench_quality.seeds(quick),
        prefix="quality_methods",
    )
    return {
        "title": "Every loss-weighting method on one quality table (paired seeds)",
        "markdown": "\n\n".join([budget, *sections]),
        "results": results,
        "seconds": seconds,
    }
