"""The settings of the gateway: ``ACLBUS_GATEWAY__*`` and the ``[gateway]`` table."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from aclbus.settings import CommaList, SectionSettings, section_config

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

    # -- webhooks and the event stream (docs/operations.md "Webhooks", "Event stream") -----
    webhook_hosts: CommaList = Field(default_factory=list)
    """Hosts a webhook URL may name: patterns such as ``hooks.example.com`` or
    ``*.svc.cluster.local`` (``fnmatch``, any case); empty: any host. Set it in production: a
    caller can otherwise make the gateway POST to any address the gateway reaches
    (server-side request forgery), its own network's included."""
    webhook_attempts: int = Field(default=5, ge=1, le=100)
    """Deliveries of one message to one webhook at most (the bus' ``max_deliver`` caps it)."""
    webhook_backoff: float = Field(default=1.0, gt=0, le=3600)
    """Seconds before the second attempt; each later one waits twice as long (with jitter)."""
    webhook_backoff_max: float = Field(default=300.0, gt=0, le=86400)
    """The longest wait between two attempts, in seconds."""
    webhook_timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds a webhook has to answer one POST; keep it well under the bus' ``ack_wait``."""
    webhook_in_flight: int = Field(default=16, ge=1, le=10_000)
    """POSTs to one webhook at the same time at most; more wait for a slot."""
    webhooks_per_agent: int = Field(default=20, ge=1, le=1000)
    """Webhooks one agent may register; one more is refused with 409."""
    stream_poll: float = Field(default=0.25, gt=0, le=60)
    """Seconds between two looks at the durable stream while an event stream is idle."""
    stream_keepalive: float = Field(default=15.0, gt=0, le=3600)
    """Seconds of silence after which an event stream sends a keep-alive comment."""
    stream_batch: int = Field(default=100, ge=1, le=1000)
    """Stored messages read per look at the durable stream."""
    stream_clients: int = Field(default=100, ge=1, le=100_000)
    """Event streams open at the same time at most; one more is refused with 503."""
    stream_duration: float = Field(default=3600.0, gt=0, le=86400)
    """Seconds an event stream stays open at most; then it ends and the client reconnects
    with ``Last-Event-ID``, losing nothing (it lets connections move between gateways)."""
