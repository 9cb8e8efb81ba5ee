"""Settings, read from arguments, ``ACLBUS_*`` environment variables, ``.env`` and ``aclbus.toml``.

Nested settings use ``__``: ``ACLBUS_MEMORY__SEED=7`` sets ``settings.memory.seed``. Lists are
comma-separated (``ACLBUS_PLUGINS=retry,dedup``) or JSON. The precedence, highest first:
arguments to `Settings`, the environment, ``.env``, ``aclbus.toml``, the defaults.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from aclbus.backend import DeliveryMode
from aclbus.subjects import validate_id

__all__ = ["MemorySettings", "Settings", "StreamLimits"]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class StreamLimits(BaseModel):
    """Limits applied to every stream aclbus provisions (per traffic class).

    Attributes:
        max_age: Seconds a message is kept; None keeps it until acknowledged by all consumers
            and the other limits.
        max_bytes: Bytes a stream holds at most; None: no limit.
        max_msgs: Messages a stream holds at most; None: no limit.
        duplicate_window: Seconds within which a repeated message id is not stored again.
        replicas: Copies of each stream on a cluster (1 or 3, usually).
        storage: ``file`` (survives restarts) or ``memory``.
    """

    max_age: float | None = Field(default=7 * 24 * 3600.0, gt=0)
    max_bytes: int | None = Field(default=256 << 20, gt=0)
    max_msgs: int | None = Field(default=None, gt=0)
    duplicate_window: float = Field(default=120.0, gt=0)
    replicas: int = Field(default=1, ge=1, le=5)
    storage: str = Field(default="file", pattern="^(file|memory)$")


class MemorySettings(BaseModel):
    """Settings of the in-memory backend.

    Attributes:
        seed: Seed of the fault injector, so a run with faults is repeatable.
    """

    seed: int = 0


class Settings(BaseSettings):
    """Everything the bus needs to know, with a sane default for each.

    Attributes:
        backend: Which backend: ``memory``, or one an installed adapter registers (``nats``).
        subject_prefix: First token of every subject and stem of every stream name.
        max_message_bytes: Largest encoded message (headers + body) a publish may send.
        request_timeout: Default seconds `Bus.request` waits for a reply.
        max_requests_in_flight: Requests waiting for replies at once, per bus; more wait.
        ack_wait: Seconds before an unacknowledged delivery is redelivered.
        max_deliver: Deliveries of one message at most; None: unlimited.
        broadcast_mode: Delivery mode of broadcasts (``at_least_once`` keeps them for an
            agent that is briefly away).
        handler_concurrency: Messages one agent handles at the same time.
        plugins: Allow-list of plugin names to load from the ``aclbus`` entry points; None
            loads all installed ones.
        disable_plugins: Plugin names not to load.
        streams: Limits of the streams aclbus provisions.
        memory: Settings of the memory backend.
        credentials: A secret placeholder that adapters may read (never logged).
    """

    model_config = SettingsConfigDict(
        env_prefix="ACLBUS_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        toml_file="aclbus.toml",
        extra="ignore",
        validate_default=True,
    )

    backend: str = "memory"
    subject_prefix: str = "aclbus"
    max_message_bytes: int = Field(default=1 << 20, gt=0)
    request_timeout: float = Field(default=5.0, gt=0)
    max_requests_in_flight: int = Field(default=1024, ge=1)
    ack_wait: float = Field(default=30.0, gt=0)
    max_deliver: int | None = Field(default=None, ge=1)
    broadcast_mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE
    handler_concurrency: int = Field(default=1, ge=1)
    plugins: Annotated[list[str] | None, NoDecode] = None
    disable_plugins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    streams: StreamLimits = Field(default_factory=StreamLimits)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    credentials: SecretStr | None = None

    @field_validator("plugins", "disable_plugins", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("subject_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        return validate_id(value, "subject prefix")

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        return value.strip().lower()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read arguments, then the environment, ``.env``, ``aclbus.toml``, secrets files."""
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
            file_secret_settings,
        )

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every secret masked, for display and logs."""
        return self.model_dump(mode="json")
