"""`shapes`: the embedded default dataset, a TFDS builder generated locally.

32x32 RGB images of twelve shapes in four families, with a coarse label (the
family) and a fine label (the shape). Generation is deterministic, needs no
network and takes a few seconds; `tfds.load("shapes", data_dir=...)` builds it
on first use once `keras_mtl.data` is imported.

Configs: `shapes` (= `shapes/default`, 10,000 train / 2,000 test images) and
`shapes/tiny` (512 / 256) for tests.
"""

import dataclasses

import tensorflow_datasets as tfds

from keras_mtl.data.shapes import render


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
    train_examples: int = 10_000
    test_examples: int = 2_000


class Shapes(tfds.core.GeneratorBasedBuilder):
    """Shapes with a coarse (family) and a fine (shape) label."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        ShapesConfig(name="default", description="10,000 train / 2,000 test."),
        ShapesConfig(
            name="tiny",
            description="512 train / 256 test, for tests.",
            train_examples=512,
            test_examples=256,
        ),
    ]

    def _info(self):
        return self.dataset_info_from_configs(
            description=(
                "32x32 images of 12 shapes in 4 families, drawn with random "
                "position, scale, rotation, colours, clutter and noise."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(render.SIZE, render.SIZE, 3)),
                    "coarse_label": tfds.features.ClassLabel(names=render.COARSE_NAMES),
                    "label": tfds.features.ClassLabel(names=render.FINE_NAMES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/keras-mtl/keras-mtl",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Generated locally, nothing to download.
        return {
            "train": self._generate_examples(
                seed=0, count=self.builder_config.train_examples
            ),
            "test": self._generate_examples(
                seed=1, count=self.builder_config.test_examples
            ),
        }

    def _generate_examples(self, seed, count):
        for index in range(count):
            image, fine, coarse = render.render(index, seed)
            yield index, {"image": image, "coarse_label": coarse, "label": fine}
