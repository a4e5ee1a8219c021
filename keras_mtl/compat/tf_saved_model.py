"""A SavedModel's fingerprint written again after its `saved_model.pb` changed.

`tf.saved_model.save` writes `fingerprint.pb` beside `saved_model.pb`, with a
checksum of it. `keras_mtl.export_classify` edits the method names of some
SignatureDefs in `saved_model.pb` after the save (TF2 saves every signature
as a predict one, and TF Serving's Classify and Regress need their own); the
fingerprint is then made again from the edited file with TensorFlow's own
function, `fingerprinting_pywrap.CreateFingerprintDef`, which has no public
name.
"""

import os
from pathlib import Path

from keras_mtl.compat.internals import attribute, import_module

FEATURE = "export.classify_signatures (the SavedModel fingerprint)"
FINGERPRINT_FILE = "fingerprint.pb"


def fingerprint_bytes(export_dir):
    """The serialized `FingerprintDef` of the SavedModel in `export_dir`."""
    module = import_module(
        "tensorflow.python.saved_model.pywrap_saved_model.fingerprinting", FEATURE
    )
    create = attribute(module, "CreateFingerprintDef", FEATURE, owner=module.__name__)
    return create(str(export_dir))


def rewrite_fingerprint(export_dir):
    """Writes `fingerprint.pb` again from `saved_model.pb`, when there is one.

    The new file is written beside the old one and renamed over it.
    """
    path = Path(export_dir) / FINGERPRINT_FILE
    if not path.exists():
        return
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(fingerprint_bytes(export_dir))
    os.replace(temporary, path)
