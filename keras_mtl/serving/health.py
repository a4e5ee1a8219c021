"""gRPC's standard health checking service (`grpc.health.v1.Health`).

Load balancers and Kubernetes' gRPC probes ask it whether a server, and a
service, can take requests. Here the services are the models: `Check` with
`service` = a model's name answers SERVING while a version of it is
available and NOT_SERVING otherwise (before its first version loads, after
its last is removed); the empty service "" answers SERVING while the server
is up. An unknown name is NOT_FOUND. On shutdown everything turns
NOT_SERVING before the port stops accepting. `Watch` streams the changes.
Built on `grpcio-health-checking` (the `serving` extra).
"""

from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ModelHealth:
    """The health service of a gRPC server, kept in step with a registry.

    Args:
        registry: The server's `ModelRegistry`.

    Example:

    ```python
    model_health = ModelHealth(registry)
    model_health.add_to_server(grpc_server)
    registry_change_callback = lambda change: model_health.update()
    ```
    """

    def __init__(self, registry):
        self.registry = registry
        self.servicer = health.HealthServicer()
        self.update()

    def add_to_server(self, server):
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def update(self):
        """Sets each model's status from the versions available now."""
        for name in self.registry.configs:
            available = bool(self.registry.available_versions(name))
            self.servicer.set(name, SERVING if available else NOT_SERVING)
        self.servicer.set("", SERVING)

    def shutdown(self):
        """Every service NOT_SERVING from now on (and `update` does nothing)."""
        self.servicer.enter_graceful_shutdown()
