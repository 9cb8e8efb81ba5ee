"""The settings of the gateway: ``ACLBUS_GATEWAY__*`` and the ``[gateway]`` table."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from aclbus.settings import SectionSettings, section_config

__all__ = ["GatewaySettings"]


class GatewaySettings(SectionSettings):
    """How ``aclbus serve`` runs, read from ``ACLBUS_GATEWAY__*``, ``.env`` and ``aclbus.toml``.

    Attributes:
        host: The address uvicorn listens on; loopback unless you mean to expose it.
        port: The port uvicorn listens on; 0 picks a free one (``aclbus serve`` prints it).
        tokens: Bearer tokens by agent id: a caller presenting ``tokens[a]`` acts as agent
            ``a``, and only as ``a``.
        tokens_file: A TOML or JSON file of the same mapping (agent id to token), read at
            start; kept out of the settings so the tokens stay out of the environment.
        max_body_bytes: The largest request body, refused with 413 before it is parsed;
            None: the bus' ``max_message_bytes``.
        max_request_timeout: The longest ``timeout`` a ``/communication/request`` may ask
            for, in seconds (an HTTP call held open is a connection and a request slot).
        ready_timeout: Seconds ``/health/ready`` waits for the broker's answer.
        metrics: Count the gateway bus' messages (the metrics plugin, on for the bus the
            gateway makes even without ``ACLBUS_METRICS__ENABLED``) and serve ``/metrics``.
        tls_certfile: The server's certificate (PEM): serve HTTPS instead of HTTP.
        tls_keyfile: The key of ``tls_certfile``.
        tls_client_ca: Require a client certificate signed by this CA (mutual TLS). The
            certificate admits the connection; the bearer token still names the agent.
    """

    model_config = section_config("gateway")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    tokens_file: Path | None = None
    max_body_bytes: int | None = Field(default=None, gt=0)
    max_request_timeout: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    ready_timeout: float = Field(default=2.0, gt=0, allow_inf_nan=False)
    metrics: bool = True
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_client_ca: Path | None = None
