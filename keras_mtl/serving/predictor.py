"""`Predictor`: what REST and gRPC share between a decoded request and the model.

TF Serving's `TensorflowPredictor` and classify / regress services: resolve
the model spec, check the signature, the input names, dtypes and shapes and
the output filter, then run the signature, directly or through the batch
scheduler. Both fronts call it, so their answers and their errors are equal.
"""

import asyncio
import re
import time

import numpy as np
import tensorflow as tf

from keras_mtl.saved_model import (
    CLASSIFY_METHOD,
    PREDICT_METHOD,
    REGRESS_METHOD,
    SIGNATURE,
)
from keras_mtl.serving.batching import BatchScheduler
from keras_mtl.serving.json_tensor import type_name
from keras_mtl.serving.status import Code, ServingError, invalid_argument


def _shape_text(shape):
    dims = shape.as_list() if isinstance(shape, tf.TensorShape) else list(shape)
    return "[" + ",".join("-1" if d is None else str(d) for d in dims) + "]"


def _dtype_of(array):
    if array.dtype.kind in "OSU":
        return tf.string
    try:
        return tf.as_dtype(array.dtype)
    except TypeError:
        return None


_GRAPH_NOISE = re.compile(
    r"\s*\[\[\{\{node [^}]*\}\}\]\]|\s*\[Op:[^\]]*\]|\{\{function_node [^}]*\}\}\s*"
)


def op_error_message(message):
    """TensorFlow's message without the graph's internals: eager's "Graph
    execution error", "Detected at node ..." and its stack, `[[{{node ...}}]]`,
    `{{function_node ...}}` and `[Op:...]` (node and function names say
    nothing to a client)."""
    kept = []
    for line in message.splitlines():
        stripped = _GRAPH_NOISE.sub("", line).strip()
        if (
            not stripped
            or stripped.startswith(("Graph execution error", "Detected at node"))
            or stripped.startswith(("<stack traces", "File ", "{{"))
        ):
            continue
        kept.append(stripped)
    return " ".join(kept) or "The model failed on this input."


def _model_error(error):
    """A failure inside the model call, as a status."""
    if isinstance(error, ServingError):
        return error
    if isinstance(error, tf.errors.OpError):
        return ServingError(Code(error.error_code), op_error_message(error.message))
    if isinstance(error, (ValueError, TypeError)):
        return invalid_argument(str(error))
    return ServingError(Code.INTERNAL, f"{type(error).__name__}: {error}")


def _fits(dims, shape):
    """Whether `shape` has the rank of `dims` and its sizes where they are
    not None (a loop: faster than `any` over a generator for a few dims)."""
    if len(dims) != len(shape):
        return False
    for wanted, size in zip(dims, shape):  # noqa: B905 (lengths checked)
        if wanted is not None and wanted != size:
            return False
    return True


async def _result(future, deadline):
    """The result of a `concurrent.futures.Future`, awaited on the running
    loop until `deadline` (a `time.monotonic()` time, or None), then
    cancelled: a batch formed later drops a cancelled call. (A timer rather
    than `asyncio.wait_for`, which wraps the wait in a task of its own.)"""
    waiter = asyncio.wrap_future(future)
    if deadline is None:
        return await waiter
    expired = []

    def expire():
        expired.append(True)
        waiter.cancel()

    timer = asyncio.get_running_loop().call_later(
        max(0.0, deadline - time.monotonic()), expire
    )
    try:
        return await waiter
    except asyncio.CancelledError:
        if not expired:
            raise  # the caller was cancelled (the client went away)
        raise ServingError(
            Code.DEADLINE_EXCEEDED, "Request timed out waiting for its batch"
        ) from None
    finally:
        timer.cancel()


def _empty_outputs(signature_def, tensors):
    """A batch of 0 rows gets outputs of 0 rows without a model call, as a
    model that accepts empty batches answers (many graphs fail on them, with
    node names in the error); None for a non-empty batch, or outputs whose
    shape the signature does not fix."""
    if not tensors or any(a.ndim == 0 or a.shape[0] for a in tensors.values()):
        return None
    outputs = {}
    for name, info in signature_def.outputs.items():
        dims = [d.size for d in info.tensor_shape.dim]
        if info.tensor_shape.unknown_rank or not dims or -1 in dims[1:]:
            return None
        dtype = tf.as_dtype(info.dtype)
        numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
        outputs[name] = np.zeros([0] + dims[1:], dtype=numpy_dtype)
    return outputs


class Predictor:
    """Runs checked requests against the registry's servables.

    Args:
        registry: The `ModelRegistry`.
        batching: `BatchingParameters` to batch model calls with, or None.
        metrics: A `Metrics`, or None.

    Example:

    ```python
    predictor = Predictor(registry)
    servable = predictor.servable(ModelSpec("shapes"))
    outputs = predictor.predict(servable, "", {"image": images})
    ```
    """

    def __init__(self, registry, batching=None, metrics=None, method_name_check=False):
        self.registry = registry
        self.metrics = metrics
        # TF Serving's --enable_signature_method_name_check
        self.method_name_check = method_name_check
        self.scheduler = BatchScheduler(batching, metrics) if batching else None
        self._check_cache = {}

    def stop(self):
        if self.scheduler is not None:
            self.scheduler.stop()

    def servable(self, spec):
        return self.registry.resolve(spec)

    def input_infos(self, servable, signature_name):
        """The inputs of a signature, for the JSON codec (GetInfoMap)."""
        key = signature_name or SIGNATURE
        if key not in servable.model.signature_defs:
            raise invalid_argument(
                f'Serving signature name: "{key}" not found in signature def'
            )
        return servable.model.signature_inputs.get(key, {})

    def _signature(self, servable, signature_name):
        key = signature_name or SIGNATURE
        signature_def = servable.model.signature_defs.get(key)
        if signature_def is None:
            raise ServingError(
                Code.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
            )
        if self.method_name_check and signature_def.method_name not in (
            PREDICT_METHOD,
            CLASSIFY_METHOD,
            REGRESS_METHOD,
        ):
            raise invalid_argument(
                "Expected prediction signature method_name to be one of "
                f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: "
                f"{signature_def.method_name}"
            )
        if key not in servable.model.signatures:
            raise ServingError(
                Code.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
            )
        return key, signature_def

    @staticmethod
    def _check_names(signature_def, inputs, output_filter):
        expected, sent = set(signature_def.inputs), set(inputs)
        if expected != sent:
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != "
                f"len({{{','.join(sorted(expected))}}}). Sent extra: "
                f"{{{','.join(sorted(sent - expected))}}}. Missing but required: "
                f"{{{','.join(sorted(expected - sent))}}}."
            )
        outputs, seen = set(signature_def.outputs), set()
        for alias in output_filter:
            if alias not in outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs "
                    f"expected to be in the set {{{','.join(sorted(outputs))}}}."
                )
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)

    def _checks(self, servable, key):
        """Per input: (index, name, spec, numpy dtype or None, dims or None);
        plain tuples, because TensorShape comparisons cost ~10 us each."""
        cache_key = (servable.name, servable.version, key)
        checks = self._check_cache.get(cache_key)
        if checks is None:
            specs = servable.model.signature_inputs[key]
            checks = []
            for index, name in enumerate(sorted(specs)):
                spec = specs[name]
                numpy_dtype = (
                    None
                    if spec.dtype == tf.string
                    else np.dtype(spec.dtype.as_numpy_dtype)
                )
                dims = None if spec.shape.rank is None else tuple(spec.shape.as_list())
                checks.append((index, name, spec, numpy_dtype, dims))
            if len(self._check_cache) > 256:
                self._check_cache.clear()
            self._check_cache[cache_key] = checks
        return checks

    def _check_tensors(self, servable, key, inputs):
        tensors = {}
        for index, name, spec, numpy_dtype, dims in self._checks(servable, key):
            array = np.asarray(inputs[name])
            if numpy_dtype is None:
                matches = array.dtype.kind in "OSU"
            else:
                matches = array.dtype == numpy_dtype
            if not matches:
                dtype = _dtype_of(array)
                received = type_name(dtype) if dtype is not None else array.dtype.name
                raise invalid_argument(
                    f"Expects arg[{index}] to be {type_name(spec.dtype)} but "
                    f"{received} is provided"
                )
            if dims is not None and not _fits(dims, array.shape):
                raise invalid_argument(
                    f"Input '{name}' of signature '{key}' expects shape "
                    f"{_shape_text(spec.shape)} (-1: any size) but received "
                    f"{_shape_text(array.shape)}."
                )
            tensors[name] = array
        return tensors

    def predict(
        self,
        servable,
        signature_name,
        inputs,
        output_filter=(),
        deadline=None,
        api="Predict",
    ):
        """Checks and runs one Predict request.

        Args:
            servable: From `servable(spec)`.
            signature_name: The signature key; "" is `serving_default`.
            inputs: Input name -> numpy array.
            output_filter: Output names to return; all when empty.
            deadline: A `time.monotonic()` time for batched calls, or None.
            api: The API the runtime-latency metric is recorded under
                ("Classify", "Regress" and "MultiInference" run through here
                too).

        Returns:
            Output name -> numpy array.
        """
        start, key, tensors, outputs = self._start(
            servable, signature_name, inputs, output_filter
        )
        if outputs is None and self.scheduler is None:
            outputs = self._run(servable, key, tensors)
        elif outputs is None:
            batch = self._batch(servable, key, tensors)
            outputs = self.scheduler.run(*batch, deadline)
        return self._answer(servable, start, outputs, output_filter, api)

    async def predict_async(
        self, servable, signature_name, inputs, output_filter=(), deadline=None
    ):
        """`predict` on an event loop: a batched call is awaited without
        holding a thread. Without batching it is `predict`, and the model
        runs on the loop's thread."""
        if self.scheduler is None:
            return self.predict(
                servable, signature_name, inputs, output_filter, deadline
            )
        start, key, tensors, outputs = self._start(
            servable, signature_name, inputs, output_filter
        )
        if outputs is None:
            batch = self._batch(servable, key, tensors)
            outputs = await _result(self.scheduler.submit(*batch, deadline), deadline)
        return self._answer(servable, start, outputs, output_filter)

    def _start(self, servable, signature_name, inputs, output_filter):
        """Checks a call: (start time, signature key, checked arrays, and
        the outputs when no model call is needed, else None)."""
        key, signature_def = self._signature(servable, signature_name)
        self._check_names(signature_def, inputs, output_filter)
        tensors = self._check_tensors(servable, key, inputs)
        start = time.perf_counter()
        return start, key, tensors, _empty_outputs(signature_def, tensors)

    def _answer(self, servable, start, outputs, output_filter, api="Predict"):
        if self.metrics:
            self.metrics.observe_runtime(
                servable.name, api, (time.perf_counter() - start) * 1e6
            )
        if output_filter:
            outputs = {name: outputs[name] for name in output_filter}
        return outputs

    @staticmethod
    def _run(servable, key, tensors):
        try:
            return servable.model.run(tensors, key)
        except Exception as error:  # reported to the client as a status
            raise _model_error(error) from None

    def _batch(self, servable, key, tensors):
        """(batch key, model call, arrays, rows) for the batch scheduler."""
        sizes = set()
        for array in tensors.values():
            if array.ndim == 0:
                raise invalid_argument(
                    "Batching Run() input tensors must have at least one dimension"
                )
            sizes.add(array.shape[0])
        if len(sizes) != 1:
            raise invalid_argument(
                "Batching Run() input tensors must have equal 0th-dimension size"
            )
        batch_key = (
            servable.name,
            servable.version,
            key,
            tuple((name, a.shape[1:], a.dtype.str) for name, a in tensors.items()),
        )

        def run(merged):
            return self._run(servable, key, merged)  # reported to every caller

        return batch_key, run, tensors, sizes.pop()
