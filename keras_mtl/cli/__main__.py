"""`python -m keras_mtl.cli ...` runs `keras-mtl ...` of this interpreter."""

import sys

from keras_mtl.cli import main

sys.exit(main())
