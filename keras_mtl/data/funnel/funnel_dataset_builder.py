"""`funnel`: impressions -> clicks -> conversions, generated locally.

Features and labels are described in `keras_mtl.data.funnel.generate`.
Configs: `default` (seed 0), `seed_1` .. `seed_4` (new directions and rows),
each 20,000 train / 5,000 test impressions, and `tiny` (512 / 256) for
tests. Deterministic per seed; `tfds.load("funnel", data_dir=...)` builds it
on first use once `keras_mtl.data` is imported.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from keras_mtl.data.funnel import generate

_INT_LABELS = (
    "click",
    "conversion",
    "conversion_if_clicked",
    "conversion_given_click_label",
)


@dataclasses.dataclass
class FunnelConfig(tfds.core.BuilderConfig):
    seed: int = 0
    train_examples: int = 20_000
    test_examples: int = 5_000


def _configs():
    configs = [FunnelConfig(name="default", description="Seed 0.")]
    configs += [
        FunnelConfig(name=f"seed_{seed}", description=f"Seed {seed}.", seed=seed)
        for seed in range(1, 5)
    ]
    configs.append(
        FunnelConfig(
            name="tiny",
            description="512 train / 256 test, for tests.",
            train_examples=512,
            test_examples=256,
        )
    )
    return configs


class Funnel(tfds.core.GeneratorBasedBuilder):
    """Clicks and conversions with known true probabilities (ESMM's setting)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = _configs()

    def _info(self):
        labels = {key: tfds.features.Scalar(dtype=np.int64) for key in _INT_LABELS}
        truths = {
            key: tfds.features.Scalar(dtype=np.float32)
            for key in ("true_ctr", "true_cvr")
        }
        return self.dataset_info_from_configs(
            description=(
                "Impressions with a click label, a conversion label observed "
                "only after a click, and the true p(click) and "
                "p(conversion | click) of every row."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "features": tfds.features.Tensor(
                        shape=(generate.DIMENSION,), dtype=np.float32
                    ),
                    **labels,
                    **truths,
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
        rows = generate.generate(count, self.builder_config.seed, split_index)
        for index in range(count):
            yield index, {key: values[index] for key, values in rows.items()}
