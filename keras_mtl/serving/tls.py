"""TLS for both fronts, from TF Serving's `SSLConfig` (`--ssl_config_file`).

The config holds PEM text, not file names: `server_key` and `server_cert`
(the server's key and certificate chain), `custom_ca` (the certificates that
sign client certificates) and `client_verify` (refuse clients without a
certificate that `custom_ca` signed). TF Serving applies it to gRPC;
keras-mtl serve applies the same config to gRPC (`grpc.ssl_server_credentials`)
and to REST (an `ssl.SSLContext` under the event loop).
"""

import dataclasses
import os
import ssl
import tempfile


@dataclasses.dataclass(frozen=True)
class SSLConfig:
    """TF Serving's `SSLConfig`: PEM key, certificate, CA and client checks.

    Example:

    ```python
    config = SSLConfig(key_pem, cert_pem, ca_pem, client_verify=True)
    ModelServer([...], ssl_config=config)
    ```
    """

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False
    source: str = dataclasses.field(default="ssl_config", compare=False)

    def __post_init__(self):
        if not self.server_key.strip() or not self.server_cert.strip():
            raise ValueError(
                f"{self.source}: `server_key` and `server_cert` must hold PEM text "
                "(-----BEGIN ...), not be empty."
            )
        if self.client_verify and not self.custom_ca.strip():
            raise ValueError(
                f"{self.source}: `client_verify: true` needs `custom_ca`, the PEM "
                "certificates that sign the client certificates."
            )

    def grpc_credentials(self):
        import grpc

        return grpc.ssl_server_credentials(
            [(self.server_key.encode(), self.server_cert.encode())],
            root_certificates=self.custom_ca.encode() or None,
            require_client_auth=self.client_verify,
        )

    def ssl_context(self):
        """A server-side `ssl.SSLContext` for the REST front."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # load_cert_chain reads files only: a private temporary file, removed
        # as soon as it is read.
        descriptor, path = tempfile.mkstemp(prefix="keras-mtl-tls-", suffix=".pem")
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(self.server_key.strip() + "\n")
                file.write(self.server_cert.strip() + "\n")
            try:
                context.load_cert_chain(path)
            except ssl.SSLError as error:
                raise ValueError(
                    f"{self.source}: `server_key` and `server_cert` are not a "
                    f"matching PEM key and certificate: {error}"
                ) from None
        finally:
            os.unlink(path)
        if self.custom_ca.strip():
            context.load_verify_locations(cadata=self.custom_ca)
        if self.client_verify:
            context.verify_mode = ssl.CERT_REQUIRED
        return context
