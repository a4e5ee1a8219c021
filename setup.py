"""The one compiled part of keras-mtl; everything else is in pyproject.toml.

`keras_mtl/serving/_json_numbers.c` reads large numeric JSON arrays of REST
:predict bodies straight into buffers (keras_mtl/serving/json_numeric.py).
It is optional: where it does not build (no C compiler or Python headers),
the install goes on and the server uses pysimdjson for those arrays.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "keras_mtl.serving._json_numbers",
            sources=["keras_mtl/serving/_json_numbers.c"],
            optional=True,
        )
    ]
)
