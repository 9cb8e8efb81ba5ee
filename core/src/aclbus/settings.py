"""Settings, read from arguments, ``ACLBUS_*`` environment variables, ``.env`` and ``aclbus.toml``.

Nested settings use ``__``: ``ACLBUS_MEMORY__SEED=7`` sets ``settings.memory.seed``. Lists are
comma-separated (``ACLBUS_PLUGINS=retry,dedup``) or JSON. The precedence, highest first:
arguments to `Settings`, the environment, ``.env``, ``aclbus.toml``, the defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from aclbus.backend import DeliveryMode
from aclbus.config_file import CONFIG_FILE, ConfigFileSource, register_section
from aclbus.errors import ConfigurationError
from aclbus.subjects import validate_id

__all__ = [
    "CommaList",
    "DirectorySettings",
    "MemorySettings",
    "SectionSettings",
    "Settings",
    "StreamLimits",
    "section_config",
    "user_data_dir",
]


def user_data_dir() -> Path:
    """The per-user data directory of aclbus: ``$XDG_DATA_HOME/aclbus``.

    ``XDG_DATA_HOME`` defaults to ``~/.local/share``.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aclbus"


def _split(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split)]
"""A list setting read from ``a,b,c`` or from JSON (``["a", "b"]``) in the environment."""


class _Sources(BaseSettings):
    """Where aclbus settings come from: arguments, environment, ``.env``, ``aclbus.toml``.

    A value that fails validation raises `ConfigurationError` (never pydantic's
    ``ValidationError``), naming each bad setting with its variable and its place in
    ``aclbus.toml``; the rejected value is not shown, since it may be a secret.
    """

    def __init__(self, *args: Any, **values: Any) -> None:
        try:
            super().__init__(*args, **values)
        except ValidationError as exc:
            raise ConfigurationError(_problems(type(self), exc)) from None

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
            ConfigFileSource(settings_cls),
            file_secret_settings,
        )


def _problems(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line per bad setting: its name, its variable, its place in the file, the problem."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    header = tuple(cls.model_config.get("toml_table_header") or ())
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        problem = error["msg"].removeprefix("Value error, ")
        if not loc:
            lines.append(f"- {problem}")
            continue
        table = ".".join((*header, *loc[:-1]))
        place = f"[{table}] {loc[-1]}" if table else loc[-1]
        variable = prefix + "__".join(loc).upper()
        lines.append(f"- {'.'.join(loc)} ({variable}, or {place} in {CONFIG_FILE}): {error['msg']}")
    what = f"[{'.'.join(header)}] settings" if header else "settings"
    return f"invalid {what}:\n" + "\n".join(lines)


def section_config(section: str) -> SettingsConfigDict:
    """The settings config of an adapter's or plugin's own section.

    ``section_config("nats")`` reads ``ACLBUS_NATS__*`` variables (in the environment and
    ``.env``) and the ``[nats]`` table of ``aclbus.toml``:

    ```python
    class NatsSettings(SectionSettings):
        model_config = section_config("nats")
        servers: CommaList = []
    ```

    A missing ``[nats]`` table means the defaults; a key in it that is no field of the class
    is a `ConfigurationError` naming the file, the table and the key.
    """
    if not section or not section.replace("_", "").isalnum() or not section.isascii():
        raise ConfigurationError(
            f"section name {section!r} must be letters, digits and '_' (it is the table "
            "name in aclbus.toml and part of the ACLBUS_<SECTION>__* variable names)"
        )
    return SettingsConfigDict(
        env_prefix=f"ACLBUS_{section.upper()}__",
        env_file=".env",
        env_file_encoding="utf-8",
        toml_file=CONFIG_FILE,
        toml_table_header=(section,),
        extra="ignore",
        hide_input_in_errors=True,  # a rejected value may be a password or a URL holding one
    )


class SectionSettings(_Sources):
    """Base of an adapter's or plugin's settings; give it ``model_config = section_config(...)``.

    Each subclass is recorded as the reader of its table, so that the bus can tell a table of
    an installed package from a typo (`aclbus.config_file.check_config_file`).
    """

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Record the class as the reader of its ``aclbus.toml`` table."""
        super().__pydantic_init_subclass__(**kwargs)
        header = cls.model_config.get("toml_table_header") or ()
        if header:
            register_section(header[0], cls)


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
        discard: When a stream is full: ``new`` refuses publishes with `StreamFull` (no
            message is lost unread), ``old`` drops the oldest messages.
        max_consumers: Consumers a stream may have. Each agent takes one on the inbox
            stream (one more once its priority lane is used) and one on the broadcast
            stream; each group membership and durable topic subscription one on its stream.
            A start that needs one more fails with `ConsumerLimitReached`. Set explicitly
            because the broker's own default is low: nats-server 2.15 stops a stream at
            1,000 consumers unless the stream says otherwise.
    """

    max_age: float | None = Field(default=7 * 24 * 3600.0, gt=0)
    max_bytes: int | None = Field(default=256 << 20, gt=0)
    max_msgs: int | None = Field(default=None, gt=0)
    duplicate_window: float = Field(default=120.0, gt=0)
    replicas: int = Field(default=1, ge=1, le=5)
    storage: str = Field(default="file", pattern="^(file|memory)$")
    discard: str = Field(default="new", pattern="^(old|new)$")
    max_consumers: int = Field(default=10_000, ge=1)


class MemorySettings(BaseModel):
    """Settings of the in-memory backend.

    Attributes:
        seed: Seed of the fault injector, so a run with faults is repeatable.
    """

    seed: int = 0


class DirectorySettings(BaseModel):
    """Settings of the agent directory and its presence heartbeats (`aclbus.directory`).

    Attributes:
        heartbeat_interval: Seconds between an agent's presence heartbeats, unless
            `Directory.register` says otherwise; an agent is unavailable once its last beat is
            older than three intervals.
        presence_ttl: Seconds the presence bucket keeps an entry that is not beaten again
            (the bucket's TTL): entries of agents that died go away. At least twice the
            heartbeat interval, so a live agent's entry never expires between two beats.
    """

    heartbeat_interval: float = Field(default=5.0, gt=0)
    presence_ttl: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _check_ttl(self) -> DirectorySettings:
        if self.presence_ttl < 2 * self.heartbeat_interval:
            raise ValueError(
                f"directory.presence_ttl ({self.presence_ttl:g} s) must be at least twice "
                f"directory.heartbeat_interval ({self.heartbeat_interval:g} s)"
            )
        return self


class Settings(_Sources):
    """Everything the bus needs to know, with a sane default for each.

    Attributes:
        backend: Which backend: ``nats`` (the default; with no server configured it starts an
            embedded nats-server), ``memory``, or one another adapter registers.
        subject_prefix: First token of every subject and stem of every stream name.
        max_message_bytes: Largest encoded message (headers + body) a publish may send.
        request_timeout: Default seconds `Bus.request` waits for a reply.
        max_requests_in_flight: Requests waiting for replies at once, per bus; more wait.
        ack_wait: Seconds before an unacknowledged delivery is redelivered.
        max_deliver: Deliveries of one message at most; then the broker gives up and the
            message is dead-lettered (``reason: max-deliver``). None: unlimited — a message
            whose handler crashes the process would come back forever.
        expired: What happens to a message whose TTL ran out before a handler saw it:
            ``dead-letter`` (reason ``expired``) or ``drop``.
        broadcast_mode: Delivery mode of broadcasts (``at_least_once`` keeps them for an
            agent that is briefly away).
        handler_concurrency: Messages one agent handles at the same time.
        priority_threshold: Messages of this priority or higher travel in the receiver's
            priority lane, consumed beside its inbox, so they overtake a backlog; None: one
            lane for all.
        max_hops: Hops a message may make (each reply or forward is one more); a bus refuses
            to send a message over it (`HopLimitExceeded`) and dead-letters one it receives
            (reason ``hop-limit``), which stops agents that answer each other in a loop. None:
            no limit.
        plugins: Allow-list of plugin names to load from the ``aclbus`` entry points; None
            loads all installed ones.
        disable_plugins: Plugin names not to load.
        streams: Limits of the streams aclbus provisions.
        memory: Settings of the memory backend.
        directory: Settings of the agent directory and presence.
        credentials: A secret placeholder that adapters may read (never logged).
        data_dir: Where backends keep local state (the embedded nats-server's store, under
            ``nats/``); None: a temporary directory per run. `user_data_dir` is the usual
            choice for a persistent one.
    """

    model_config = SettingsConfigDict(
        env_prefix="ACLBUS_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        toml_file=CONFIG_FILE,
        extra="ignore",
        validate_default=True,
        hide_input_in_errors=True,  # a rejected value may be a secret
    )

    backend: str = "nats"
    subject_prefix: str = "aclbus"
    max_message_bytes: int = Field(default=1 << 20, gt=0)
    request_timeout: float = Field(default=5.0, gt=0)
    max_requests_in_flight: int = Field(default=1024, ge=1)
    ack_wait: float = Field(default=30.0, gt=0)
    max_deliver: int | None = Field(default=10, ge=1)
    expired: Literal["dead-letter", "drop"] = "dead-letter"
    broadcast_mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE
    handler_concurrency: int = Field(default=1, ge=1)
    priority_threshold: int | None = Field(default=7, ge=0, le=9)
    max_hops: int | None = Field(default=32, ge=1, le=255)
    plugins: CommaList | None = None
    disable_plugins: CommaList = Field(default_factory=list)
    streams: StreamLimits = Field(default_factory=StreamLimits)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    directory: DirectorySettings = Field(default_factory=DirectorySettings)
    credentials: SecretStr | None = None
    data_dir: Path | None = None

    @field_validator("subject_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        return validate_id(value, "subject prefix")

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        return value.strip().lower()

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every secret masked, for display and logs."""
        return self.model_dump(mode="json")
