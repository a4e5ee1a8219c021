"""`add_loss` that stays with its replica under `MirroredStrategy`.

Keras 3.15 keeps a layer's `add_loss` terms in one list per layer
(`Layer._losses`), cleared when a call starts. `MirroredStrategy` runs each
replica's step in its own thread, one at a time between cross-replica syncs:
replica 0 calls the model, reaches a sync (the all-reduced label count of
`keras_mtl.tasks.MaskedLoss`), replica 1 calls the model and so clears and
refills the list, and replica 0 then reads replica 1's term from
`model.losses`. Measured here: an AITM model with its label constraint
trained differently on 1 and 2 replicas (loss 1.3008 vs 1.2958 after one
epoch). Keeping the terms per thread restores replica invariance.

Keras reads a layer's own terms through the private `Layer._get_own_losses`
and clears them through `Layer._clear_losses`; this mixin overrides both.
"""

import threading

from keras_mtl.compat.internals import attribute

FEATURE = "per-replica add_loss (AITM's calibration)"


class ReplicaLocalLosses:
    """Mixes into a `keras.layers.Layer`: `add_replica_loss` instead of
    `add_loss` keeps the term with the replica (thread) that computed it."""

    def _replica_terms(self):
        # A plain attribute: Keras does not track it as layer state.
        return self.__dict__.setdefault("_terms_by_thread", {})

    def add_replica_loss(self, value):
        """Replaces this replica's term (one per call, as `add_loss` in `call`)."""
        self._replica_terms()[threading.get_ident()] = [value]

    def _get_own_losses(self):
        own = attribute(super(), "_get_own_losses", FEATURE, owner="Layer")()
        return own + list(self._replica_terms().get(threading.get_ident(), []))

    def _clear_losses(self):
        self._replica_terms().pop(threading.get_ident(), None)
        attribute(super(), "_clear_losses", FEATURE, owner="Layer")()
