"""Multi-task quality on shapes with scarce fine labels (paired seeds).

    python benchmarks/run_all.py quality_shapes

The protocol of `bench_quality` on the embedded shapes dataset: coarse labels
(Head 1, 4 shape families) on every training image, fine labels (Head 2, 12
shapes, stacked on Head 1) on 5 % and 20 % of them (`data.label_fraction`).
The single-task fine model trains on the same labelled images. One more
setting keeps static weights but sets the fine task's weight to its labelled
fraction (`tasks.1.weight = f`): the fine loss is a mean over the labelled
rows of a batch, as heavy as a fully labelled task's and far noisier. The
shapes runs keep their learning rate on a cosine schedule and stop after 5
epochs without progress (`bench_quality.SHAPES_PROTOCOL`). Besides
delta-m, its table answers the protocol's own question: the seed-to-seed
standard deviation of the single-task models' test accuracy.

Environment: `KERAS_MTL_BENCH_SEEDS` (default 5), `KERAS_MTL_BENCH_METHODS`
(default `static`), `KERAS_MTL_BENCH_FRACTIONS` (default
`0.05,0.2`), `KERAS_MTL_BENCH_PROCESSES` (default one per seed).
"""

import bench_quality


def run(quick=False):
    overrides, fraction_list = bench_quality._shapes(quick)
    method_names = bench_quality.methods("static", quick)
    sections, results, budget, seconds = bench_quality.run_sections(
        "shapes",
        overrides,
        fraction_list,
        method_names,
        bench_quality.seeds(quick),
        prefix="quality_shapes",
        scaled_weight=True,
    )
    note = (
        "Test-split headline metrics: accuracy for both tasks. Delta-m is the "
        "mean over the two tasks of the signed relative change against the "
        "single-task models of the same seed, in percent; negative is better "
        "(`keras_mtl.delta_m`)."
    )
    return {
        "title": "Multi-task quality on shapes with scarce fine labels (paired seeds)",
        "markdown": "\n\n".join([budget, *sections, note]),
        "results": results,
        "seconds": seconds,
    }
