"""The model: trunk, heads and the function that assembles them."""

from keras_mtl.models.aitm import AITMHead
from keras_mtl.models.backbones import ApplicationPreprocessing
from keras_mtl.models.build import (
    build_model,
    compile_model,
    make_head,
    make_optimizer,
    make_trunk,
    trunk_output,
)
from keras_mtl.models.esmm import EntireSpaceProduct, serving_model
from keras_mtl.models.heads import TaskHead
from keras_mtl.models.inputs import make_inputs
from keras_mtl.models.mmoe import MMoETrunk
from keras_mtl.models.multi_task_model import MultiTaskModel
from keras_mtl.models.ple import PLETrunk
from keras_mtl.models.preprocessing import CleanStrings, FillMissing, StandardizeImage
from keras_mtl.models.single_task_model import build_single_task_model
from keras_mtl.models.trunk import ConvTrunk, MLPTrunk

__all__ = [
    "AITMHead",
    "ApplicationPreprocessing",
    "CleanStrings",
    "ConvTrunk",
    "EntireSpaceProduct",
    "FillMissing",
    "MLPTrunk",
    "MMoETrunk",
    "MultiTaskModel",
    "PLETrunk",
    "StandardizeImage",
    "TaskHead",
    "build_model",
    "build_single_task_model",
    "compile_model",
    "make_head",
    "make_inputs",
    "make_optimizer",
    "make_trunk",
    "trunk_output",
    "serving_model",
]
