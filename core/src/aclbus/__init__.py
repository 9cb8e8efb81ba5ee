"""aclbus: Agent Communication Language messaging for distributed AI agents.

Agents talk point-to-point, by broadcast, in groups, on topics, by request-reply,
scatter-gather and streams, and in the FIPA interaction protocols (`aclbus.protocols`), in a
FIPA ACL envelope, over NATS JetStream, Kafka or the in-memory engine, chosen by
configuration::

    from aclbus import ACLMessage, Bus, Performative, Settings

    async with Bus(Settings(backend="memory")) as bus:
        ...
"""

from __future__ import annotations

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
from aclbus.directory import AgentDescription
from aclbus.errors import (
    ACLBusError,
    ACLDecodeError,
    BackendClosed,
    CapabilityError,
    ConfigurationError,
    HopLimitExceeded,
    InvalidIdentifier,
    InvalidPayload,
    MessageTooLarge,
    NoResponders,
    NoStream,
    PermissionDenied,
    PluginError,
    PublishTimeout,
    RequestTimeout,
    StreamFull,
    UnknownBackend,
    UnsupportedVersion,
)
from aclbus.middleware import Delivery, Middleware, Outgoing
from aclbus.plugin import hookimpl
from aclbus.settings import Settings
from aclbus.shared import SharedMap
from aclbus.streaming import ReplyStream, StreamError, StreamReport

__all__ = [
    "ACL_VERSION",
    "ACLBusError",
    "ACLDecodeError",
    "ACLMessage",
    "Agent",
    "Backend",
    "BackendClosed",
    "Bus",
    "BusStats",
    "Capabilities",
    "CapabilityError",
    "Codec",
    "ConfigurationError",
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
    "UnknownBackend",
    "UnsupportedVersion",
    "__version__",
    "hookimpl",
    "AgentDescription",
    "Gathered",
    "HopLimitExceeded",
    "InvalidPayload",
    "ReplyStream",
    "SharedMap",
    "StreamError",
    "StreamReport",
]

__version__ = "0.1.0"
