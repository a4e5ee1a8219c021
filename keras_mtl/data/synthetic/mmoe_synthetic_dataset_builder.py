"""`mmoe_synthetic`: the MMoE paper's two regression tasks, generated locally.

Configs `correlation_<p>` for p in 1.0, 0.9, 0.5 (and 0.0), each
10,000 train / 2,000 test rows of a 100-dimensional `features` vector and
the targets `y1`, `y2` (`keras_mtl.data.synthetic.generate`); a
`_seed_<s>` suffix (s = 1..4) draws new weights and rows, and `tiny`
(correlation 0.5, 512 / 256 rows) is for tests. Deterministic per seed;
`tfds.load("mmoe_synthetic/correlation_0.5", data_dir=...)` builds it on
first use once `keras_mtl.data` is imported.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from keras_mtl.data.synthetic import generate

CORRELATIONS = (1.0, 0.9, 0.5, 0.0)
SEEDS = range(5)


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    correlation: float = 0.5
    seed: int = 0
    train_examples: int = 10_000
    test_examples: int = 2_000


def _configs():
    configs = []
    for correlation in CORRELATIONS:
        for seed in SEEDS:
            suffix = f"_seed_{seed}" if seed else ""
            configs.append(
                SyntheticConfig(
                    name=f"correlation_{correlation}{suffix}",
                    description=f"Task correlation {correlation}, seed {seed}.",
                    correlation=correlation,
                    seed=seed,
                )
            )
    configs.append(
        SyntheticConfig(
            name="tiny",
            description="Correlation 0.5, 512 train / 256 test, for tests.",
            train_examples=512,
            test_examples=256,
        )
    )
    return configs


class MmoeSynthetic(tfds.core.GeneratorBasedBuilder):
    """Two regression tasks with a chosen correlation (MMoE, Section 4.2)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = _configs()

    def _info(self):
        return self.dataset_info_from_configs(
            description=(
                "x ~ N(0, I_100); y_i = w_i^T x + sum_k sin(alpha_k w_i^T x + "
                "beta_k) + noise, with cos(w1, w2) the config's correlation."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "features": tfds.features.Tensor(
                        shape=(generate.DIMENSION,), dtype=np.float32
                    ),
                    "y1": tfds.features.Scalar(dtype=np.float32),
                    "y2": tfds.features.Scalar(dtype=np.float32),
                }
            ),
            homepage="https://github.com/keras-mtl/keras-mtl",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Generated locally, nothing to download.
        config = self.builder_config
        return {
            "train": self._generate_examples(0, config.train_examples),
            "test": self._generate_examples(1, config.test_examples),
        }

    def _generate_examples(self, split_index, count):
        config = self.builder_config
        x, y1, y2 = generate.generate(
            config.correlation, count, config.seed, split_index
        )
        for index in range(count):
            yield index, {"features": x[index], "y1": y1[index], "y2": y2[index]}
