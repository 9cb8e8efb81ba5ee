"""The settings of the TLS plugin: ``ACLBUS_TLS__*`` and the ``[tls]`` table."""

from __future__ import annotations

from pathlib import Path

from aclbus.settings import SectionSettings, section_config

__all__ = ["TLSSettings"]


class TLSSettings(SectionSettings):
    """TLS of a bus' connection to its broker, for every backend that has one.

    With no file set and ``handshake_first`` off, the plugin adds nothing to the connection
    (a ``tls://`` URL still uses TLS, with the system's CAs).

    Attributes:
        ca_file: CA bundle that signed the server's certificate.
        cert_file: Client certificate, for mutual TLS.
        key_file: Client key, for mutual TLS (never logged; only its path is shown).
        handshake_first: Start TLS before the server's first message (nats-server's
            ``handshake_first``), as a TLS-terminating proxy needs.
    """

    model_config = section_config("tls")

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    handshake_first: bool = False
