from __future__ import annotations

import aclbus

# The public API is a promise: changing this list is a decision, not an accident.
PUBLIC = [
    "StreamReport",
    "StreamError",
    "SharedMap",
    "ReplyStream",
    "InvalidPayload",
    "HopLimitExceeded",
    "Gathered",
    "AgentDescription",
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
    "MalformedHeaders",
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
]


def test_all_is_pinned() -> None:
    assert sorted(aclbus.__all__) == sorted(PUBLIC)


def test_every_public_name_exists_and_is_documented() -> None:
    for name in aclbus.__all__:
        obj = getattr(aclbus, name)
        if callable(obj) and not name.startswith("_") and name != "hookimpl":
            assert obj.__doc__, f"aclbus.{name} has no docstring"


def test_errors_share_one_root() -> None:
    for name in aclbus.__all__:
        obj = getattr(aclbus, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, aclbus.ACLBusError), name
