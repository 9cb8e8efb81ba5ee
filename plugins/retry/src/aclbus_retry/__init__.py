"""aclbus-retry: retry failed messages with exponential backoff and jitter, then dead-letter them.

Installed, the plugin (entry point ``retry``) puts the `Retry` consume middleware on every bus:
a handler that raises on a persistent (``at_least_once``) message gets it back after a delay
that grows with each attempt; once its attempts are spent, or at once for an error that is not
worth retrying, the message goes to the dead-letter queue (``aclbus dlq ls``) with the reason,
the attempts and the last error. Requests are not retried: their sender gets ``failure``.

Policies come from settings (``ACLBUS_RETRY__*``, ``[retry]`` in aclbus.toml), per agent
(``[retry.agents.<id>]``) and per handler (`policy`); the most specific wins, field by field.

Example:
    ```python
    import aclbus_retry

    @worker.on(Performative.REQUEST)
    @aclbus_retry.policy(max_attempts=3, give_up_on=(KeyError,))
    async def charge(msg: ACLMessage) -> None: ...
    ```
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import partial

from aclbus import Capabilities, Settings, hookimpl
from aclbus.middleware import MiddlewareFactory
from aclbus_retry.middleware import Retry
from aclbus_retry.policies import NotRetryable, RetryPolicy, policy
from aclbus_retry.settings import AgentRetrySettings, RetrySettings

__all__ = [
    "AgentRetrySettings",
    "NotRetryable",
    "Retry",
    "RetryPlugin",
    "RetryPolicy",
    "RetrySettings",
    "aclbus_middlewares",
    "aclbus_required_capabilities",
    "policy",
    "required_capabilities",
]


def required_capabilities(settings: RetrySettings) -> Capabilities:
    """What retrying under ``settings`` needs from the backend.

    Delayed redelivery (``nack_delay``) is the heart of it; giving up terminates (``term``);
    heartbeats, when configured, need ``in_progress``.
    """
    heartbeats = settings.progress_interval not in (None, "off") or any(
        agent.progress_interval not in (None, "off") for agent in settings.agents.values()
    )
    return Capabilities(ack=True, nack_delay=True, term=True, in_progress=heartbeats)


@hookimpl
def aclbus_middlewares(settings: Settings) -> Sequence[MiddlewareFactory]:
    """The `Retry` middleware, with the policies read from ``ACLBUS_RETRY__*`` and ``[retry]``."""
    return [partial(Retry, settings=RetrySettings())]


@hookimpl
def aclbus_required_capabilities(settings: Settings) -> Capabilities:
    """Delayed nacks, terms and acks (and ``in_progress`` with heartbeats), checked at start-up."""
    return required_capabilities(RetrySettings())


class RetryPlugin:
    """The plugin with its settings given in code rather than read from the environment.

    Load it instead of the entry point (``Bus(..., plugins=[RetryPlugin(...)])`` with
    ``entry_points=False`` or ``ACLBUS_DISABLE_PLUGINS=retry``), not beside it.

    Args:
        settings: The policies; None reads them as the entry point does.
        rng: The jitter's random numbers (a seeded `random.Random` for repeatable delays).
    """

    def __init__(
        self, settings: RetrySettings | None = None, *, rng: random.Random | None = None
    ) -> None:
        self.settings = settings if settings is not None else RetrySettings()
        self.rng = rng

    @hookimpl
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        """The `Retry` middleware with this plugin's settings."""
        return [partial(Retry, settings=self.settings, rng=self.rng)]

    @hookimpl
    def aclbus_required_capabilities(self, settings: Settings) -> Capabilities:
        """What this plugin's settings need from the backend."""
        return required_capabilities(self.settings)
