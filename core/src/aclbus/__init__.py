"""aclbus: Agent Communication Language messaging for distributed AI agents.

Agents talk point-to-point, by broadcast, in groups, on topics, by request-reply,
scatter-gather and streams, and in the FIPA interaction protocols (`aclbus.protocols`), in a
FIPA ACL envelope, over NATS JetStream or the in-memory engine, chosen by configuration:

```python
from aclbus import ACLMessage, Bus, Performative, Settings

async with Bus(Settings(backend="memory")) as bus:
    ...
```
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from aclbus.acl import ACL_VERSION, ACLMessage, Performative
from aclbus.agent import Agent
from aclbus.backend import (
    Backend,
    Capabilities,
    DeliveryMode,
    KeyValue,
    KVConflict,
    KVEntry,
    KVSpec,
    PublishAck,
    Received,
    StreamSpec,
    Subscription,
    SubscriptionSpec,
)
from aclbus.bus import Bus, BusStats, Gathered
from aclbus.codec import Codec, JsonCodec
from aclbus.connection_options import ConnectionOptions
from aclbus.errors import (
    ACLBusError,
    ACLDecodeError,
    AuthenticationError,
    BackendClosed,
    CapabilityError,
    ConfigurationError,
    ConsumerLimitReached,
    HeadersTooLarge,
    HopLimitExceeded,
    InvalidIdentifier,
    InvalidPayload,
    MalformedHeaders,
    MessageTooLarge,
    NoResponders,
    NoStream,
    PermissionDenied,
    PluginError,
    PublishTimeout,
    RequestTimeout,
    StreamFull,
    TLSError,
    UnknownBackend,
    UnsupportedVersion,
)
from aclbus.middleware import Delivery, Middleware, Outgoing
from aclbus.plugin import hookimpl
from aclbus.settings import Settings

if TYPE_CHECKING:
    from aclbus.directory import AgentDescription
    from aclbus.shared import SharedMap
    from aclbus.streaming import ReplyStream, StreamError, StreamReport

# Loaded on first use: most programs never touch them, and every `import aclbus` (the CLI's
# included) would pay for them.
_LAZY = {
    "AgentDescription": "aclbus.directory",
    "SharedMap": "aclbus.shared",
    "ReplyStream": "aclbus.streaming",
    "StreamError": "aclbus.streaming",
    "StreamReport": "aclbus.streaming",
}

__all__ = [
    "ACL_VERSION",
    "ACLBusError",
    "ACLDecodeError",
    "ACLMessage",
    "Agent",
    "AuthenticationError",
    "Backend",
    "BackendClosed",
    "Bus",
    "BusStats",
    "Capabilities",
    "CapabilityError",
    "Codec",
    "ConfigurationError",
    "ConnectionOptions",
    "ConsumerLimitReached",
    "HeadersTooLarge",
    "Delivery",
    "DeliveryMode",
    "InvalidIdentifier",
    "JsonCodec",
    "KVConflict",
    "KVEntry",
    "KVSpec",
    "KeyValue",
    "MessageTooLarge",
    "Middleware",
    "NoResponders",
    "NoStream",
    "Outgoing",
    "PermissionDenied",
    "Performative",
    "PluginError",
    "PublishAck",
    "PublishTimeout",
    "Received",
    "RequestTimeout",
    "Settings",
    "StreamFull",
    "StreamSpec",
    "Subscription",
    "SubscriptionSpec",
    "TLSError",
    "UnknownBackend",
    "UnsupportedVersion",
    "__version__",
    "hookimpl",
    "AgentDescription",
    "Gathered",
    "HopLimitExceeded",
    "InvalidPayload",
    "MalformedHeaders",
    "ReplyStream",
    "SharedMap",
    "StreamError",
    "StreamReport",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
