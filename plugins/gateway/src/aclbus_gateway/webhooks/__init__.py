"""Webhooks: an agent's messages POSTed to a URL, signed, retried, dead-lettered at the end.

`Webhooks` keeps the registrations (`Registration`, in the backend's KV) and hosts their
agents; `Dispatcher` POSTs each message to the webhooks it is for; `sign` and `verify` are
the signature scheme (``docs/operations.md``, "Webhooks").
"""

from __future__ import annotations

from aclbus_gateway.webhooks.dispatch import Dispatcher, WebhookUndeliverable, delivery_id
from aclbus_gateway.webhooks.model import (
    WEBHOOK_ID,
    Registration,
    WebhookFilters,
    WebhookRequest,
    WebhookView,
    WebhookWithSecret,
)
from aclbus_gateway.webhooks.service import (
    BadFilter,
    TooManyWebhooks,
    Webhooks,
    WebhooksUnavailable,
)
from aclbus_gateway.webhooks.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_HEADER,
    sign,
    verify,
)

__all__ = [
    "ATTEMPT_HEADER",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_HEADER",
    "WEBHOOK_ID",
    "BadFilter",
    "Dispatcher",
    "Registration",
    "TooManyWebhooks",
    "WebhookFilters",
    "WebhookRequest",
    "WebhookUndeliverable",
    "WebhookView",
    "WebhookWithSecret",
    "Webhooks",
    "WebhooksUnavailable",
    "delivery_id",
    "sign",
    "verify",
]
