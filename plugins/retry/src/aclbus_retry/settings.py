"""The plugin's settings: ``ACLBUS_RETRY__*`` variables and the ``[retry]`` table of aclbus.toml.

The top-level fields are the default policy; ``agents`` overrides some of them per agent:

```toml
[retry]
max_attempts = 5
initial_interval = 1.0

[retry.agents.worker]
max_attempts = 3
give_up_on = ["ValueError", "pydantic.ValidationError"]
```

or ``ACLBUS_RETRY__AGENTS='{"worker": {"max_attempts": 3}}'`` in the environment.
"""

from __future__ import annotations

import builtins
import importlib
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aclbus.settings import CommaList, SectionSettings, section_config
from aclbus.subjects import validate_id
from aclbus_retry.policies import RetryPolicy

__all__ = ["AgentRetrySettings", "RetrySettings", "exception_type"]

Progress = float | Literal["auto", "off"] | None


@lru_cache(maxsize=256)
def exception_type(name: str) -> type[BaseException]:
    """The exception class ``name`` names: ``ValueError``, ``pkg.mod.Error`` or ``pkg.mod:Error``.

    Raises:
        ValueError: Nothing importable by that name, or not an exception class.
    """
    text = name.strip()
    if ":" in text:
        module_name, _, attr = text.partition(":")
    elif "." in text:
        module_name, _, attr = text.rpartition(".")
    else:
        module_name, attr = "builtins", text
    try:
        found: object = builtins if module_name == "builtins" else None
        if found is None:
            found = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"{name!r} names no exception class ({type(exc).__name__}: {exc}); write a builtin "
            "name (ValueError) or a dotted path (package.module.Error)"
        ) from None
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ValueError(f"{name!r} is {found!r}, not an exception class")
    return found


def _check_names(names: list[str] | None) -> list[str] | None:
    if names is not None:
        for name in names:
            exception_type(name)
    return names


def _check_progress(value: Progress) -> Progress:
    if isinstance(value, float) and not value > 0:
        raise ValueError(f"progress_interval must be above 0 seconds (or 'auto', 'off'): {value}")
    return value


class AgentRetrySettings(BaseModel):
    """One agent's overrides of the default policy: only the fields given override it.

    The fields are those of `RetrySettings` (without ``agents`` and ``seed``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int | None = Field(default=None, ge=1)
    initial_interval: float | None = Field(default=None, ge=0)
    max_interval: float | None = Field(default=None, ge=0)
    multiplier: float | None = Field(default=None, ge=1)
    jitter: float | None = Field(default=None, ge=0, le=1)
    retry_on: CommaList | None = None
    give_up_on: CommaList | None = None
    progress_interval: Progress = None

    _names = field_validator("retry_on", "give_up_on")(_check_names)
    _progress = field_validator("progress_interval")(_check_progress)

    def overrides(self) -> dict[str, Any]:
        """The policy fields this agent sets, as `RetryPolicy` values (None: not set)."""
        return {
            name: _policy_value(name, value)
            for name in self.model_fields_set
            if (value := getattr(self, name)) is not None
        }


class RetrySettings(SectionSettings):
    """Settings of the retry plugin (``ACLBUS_RETRY__*``, ``[retry]`` in aclbus.toml).

    Attributes:
        max_attempts: Deliveries of one message at most, the first included. The broker's
            ``max_deliver`` (``ACLBUS_MAX_DELIVER``) caps it.
        initial_interval: Seconds before the second attempt (before jitter).
        max_interval: The longest delay before jitter.
        multiplier: Growth of the delay from one attempt to the next.
        jitter: Random spread of each delay, a fraction from 0 to 1 (0.2: ±20 %).
        retry_on: Names of the exception classes worth retrying (``Exception``: all).
        give_up_on: Names of exception classes never retried (dead-lettered at once).
        progress_interval: Seconds between ``in_progress`` heartbeats while a handler runs;
            ``auto``: a third of ``ack_wait``; ``off`` (or unset): no heartbeat.
        seed: Seed of the jitter's random numbers, for repeatable delays in tests; None (the
            default) in production, so that processes do not jitter alike.
        agents: Per-agent overrides of the fields above, by agent id.
    """

    model_config = section_config("retry")

    max_attempts: int = Field(default=5, ge=1)
    initial_interval: float = Field(default=1.0, ge=0)
    max_interval: float = Field(default=60.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=0.2, ge=0, le=1)
    retry_on: CommaList = Field(default_factory=lambda: ["Exception"])
    give_up_on: CommaList = Field(default_factory=list)
    progress_interval: Progress = None
    seed: int | None = None
    agents: dict[str, AgentRetrySettings] = Field(default_factory=dict)

    _names = field_validator("retry_on", "give_up_on")(_check_names)
    _progress = field_validator("progress_interval")(_check_progress)

    @field_validator("agents")
    @classmethod
    def _check_agents(cls, value: dict[str, AgentRetrySettings]) -> dict[str, AgentRetrySettings]:
        for agent_id in value:
            validate_id(agent_id, "agent id in retry.agents")
        return value

    def policy(self, agent: str | None = None) -> RetryPolicy:
        """The policy of ``agent`` (its overrides over the default), or the default policy."""
        default = RetryPolicy(
            **{
                name: _policy_value(name, getattr(self, name))
                for name in (
                    "max_attempts",
                    "initial_interval",
                    "max_interval",
                    "multiplier",
                    "jitter",
                    "retry_on",
                    "give_up_on",
                    "progress_interval",
                )
            }
        )
        override = self.agents.get(agent) if agent is not None else None
        return default.merged(override.overrides()) if override is not None else default


def _policy_value(name: str, value: Any) -> Any:
    """A settings value as the `RetryPolicy` field of the same name takes it."""
    if name in ("retry_on", "give_up_on"):
        return tuple(exception_type(n) for n in value or ())
    if name == "progress_interval" and value == "off":
        return None
    return value
