"""Prometheus metrics under TF Serving's names.

TF Serving exports its `/tensorflow/serving/...` metrics at
`/monitoring/prometheus/metrics` when `--monitoring_config_file` enables
Prometheus, with `/` turned into `:` (`:tensorflow:serving:request_count`).
These are the ones keras-mtl serve records, with TF Serving's labels and
histogram buckets:

| metric | labels |
|---|---|
| `:tensorflow:serving:request_count` | `model_name`, `status` |
| `:tensorflow:serving:request_latency` (microseconds) | `model_name`, `API`, `entrypoint` |
| `:tensorflow:serving:runtime_latency` (microseconds) | `model_name`, `API`, `runtime` |
| `:tensorflow:serving:batching_session:queuing_latency` | `thread_pool_name` |
| `:tensorflow:serving:batching_session:input_batch_size` | `thread_pool_name` |
| `:tensorflow:serving:batching_session:processed_batch_size` | `thread_pool_name` |
| `:tensorflow:serving:batching_session:padding_size` | `thread_pool_name` |
| `:tensorflow:cc:saved_model:load_attempt_count` | `model_path`, `status` |
| `:tensorflow:cc:saved_model:load_latency` (microseconds) | `model_path` |
"""

import bisect
import threading

PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def exponential_buckets(scale, growth, count):
    """TF's `Buckets::Exponential`: upper limits scale * growth**i."""
    return [scale * growth**i for i in range(count)]


def prometheus_name(name):
    """`/tensorflow/serving/request_count` -> `:tensorflow:serving:request_count`."""
    return "".join(c if c.isalnum() or c == "_" else ":" for c in name)


def _escape(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def _labels(names, values, extra=""):
    parts = [
        f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)
    ]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


class _Metric:
    def __init__(self, name, labels, buckets=None):
        self.name, self.labels, self.buckets = prometheus_name(name), labels, buckets
        self.cells = {}

    def render(self):
        if self.buckets is None:
            lines = [f"# TYPE {self.name} counter"]
            for values, count in sorted(self.cells.items()):
                lines.append(f"{self.name}{_labels(self.labels, values)} {count}")
            return lines
        lines = [f"# TYPE {self.name} histogram"]
        for values, (counts, total) in sorted(self.cells.items()):
            cumulative = 0
            limits = [f"{limit:g}" for limit in self.buckets] + ["+Inf"]
            for limit, count in zip(limits, counts, strict=True):
                cumulative += count
                bucket = _labels(self.labels, values, f'le="{limit}"')
                lines.append(f"{self.name}_bucket{bucket} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.labels, values)} {total:g}")
            lines.append(
                f"{self.name}_count{_labels(self.labels, values)} {cumulative}"
            )
        return lines


class Metrics:
    """The counters and histograms of a server, rendered as Prometheus text.

    Example:

    ```python
    metrics = Metrics()
    metrics.count_request("shapes", "OK")
    print(metrics.render())
    ```
    """

    LATENCY_BUCKETS = exponential_buckets(10, 1.8, 33)  # microseconds, ~20 min
    QUEUE_BUCKETS = exponential_buckets(100, 1.2, 52)  # microseconds, ~1 s
    SIZE_BUCKETS = exponential_buckets(1, 2, 15)

    def __init__(self):
        self._lock = threading.Lock()
        self.request_count = _Metric(
            "/tensorflow/serving/request_count", ("model_name", "status")
        )
        self.request_latency = _Metric(
            "/tensorflow/serving/request_latency",
            ("model_name", "API", "entrypoint"),
            self.LATENCY_BUCKETS,
        )
        self.runtime_latency = _Metric(
            "/tensorflow/serving/runtime_latency",
            ("model_name", "API", "runtime"),
            self.LATENCY_BUCKETS,
        )
        self.queuing_latency = _Metric(
            "/tensorflow/serving/batching_session/queuing_latency",
            ("thread_pool_name",),
            self.QUEUE_BUCKETS,
        )
        self.input_batch_size = _Metric(
            "/tensorflow/serving/batching_session/input_batch_size",
            ("thread_pool_name",),
            self.SIZE_BUCKETS,
        )
        self.processed_batch_size = _Metric(
            "/tensorflow/serving/batching_session/processed_batch_size",
            ("thread_pool_name",),
            self.SIZE_BUCKETS,
        )
        self.padding_size = _Metric(
            "/tensorflow/serving/batching_session/padding_size",
            ("thread_pool_name",),
            self.SIZE_BUCKETS,
        )
        self.load_attempt_count = _Metric(
            "/tensorflow/cc/saved_model/load_attempt_count", ("model_path", "status")
        )
        self.load_latency = _Metric(
            "/tensorflow/cc/saved_model/load_latency",
            ("model_path",),
            self.LATENCY_BUCKETS,
        )

    def _add(self, metric, values, amount=1):
        with self._lock:
            metric.cells[values] = metric.cells.get(values, 0) + amount

    def _observe(self, metric, values, value):
        with self._lock:
            cell = metric.cells.get(values)
            if cell is None:
                cell = metric.cells[values] = [[0] * (len(metric.buckets) + 1), 0.0]
            cell[0][bisect.bisect_left(metric.buckets, value)] += 1
            cell[1] += value

    def count_request(self, model_name, status):
        self._add(self.request_count, (model_name, status))

    def observe_request(self, model_name, api, entrypoint, micros):
        self._observe(self.request_latency, (model_name, api, entrypoint), micros)

    def observe_runtime(self, model_name, api, micros):
        self._observe(self.runtime_latency, (model_name, api, "TF2"), micros)

    def record_load(self, model_path, ok, seconds):
        self._add(self.load_attempt_count, (model_path, "success" if ok else "fail"))
        if ok:
            self._observe(self.load_latency, (model_path,), seconds * 1e6)

    def record_batch(self, pool, queuing_micros, task_sizes, processed, padding):
        for micros in queuing_micros:
            self._observe(self.queuing_latency, (pool,), micros)
        for size in task_sizes:
            self._observe(self.input_batch_size, (pool,), size)
        self._observe(self.processed_batch_size, (pool,), processed)
        self._observe(self.padding_size, (pool,), padding)

    def render(self):
        """The Prometheus text exposition of every metric with a value."""
        lines = []
        with self._lock:
            for metric in (
                self.load_attempt_count,
                self.load_latency,
                self.queuing_latency,
                self.input_batch_size,
                self.processed_batch_size,
                self.padding_size,
                self.request_count,
                self.request_latency,
                self.runtime_latency,
            ):
                if metric.cells:
                    lines += metric.render()
        return "\n".join(lines) + "\n"
