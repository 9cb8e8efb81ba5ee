"""What a webhook is: the body that registers one, the registration kept, what is shown of it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    UrlConstraints,
    field_validator,
)

from aclbus import ACLMessage, Performative
from aclbus.subjects import subject_matches, validate_id, validate_topic

__all__ = [
    "WEBHOOK_ID",
    "Registration",
    "WebhookFilters",
    "WebhookRequest",
    "WebhookView",
    "WebhookWithSecret",
    "new_webhook_id",
]

WEBHOOK_ID = r"^wh_[0-9a-f]{24}$"
"""What a webhook id looks like: ``wh_`` and 24 hex digits (a KV key token, a header value)."""

# What `validate_topic(pattern=True)` accepts, in the document too: dotted tokens of 1 to 128
# id characters, `*` for one token, `>` for the rest (last only).
_TOKEN = r"(?:[A-Za-z0-9_-]{1,128}|\*)"
_Pattern = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=rf"^(?:{_TOKEN}\.)*(?:{_TOKEN}|>)$"),
]


def new_webhook_id() -> str:
    """A new, random webhook id."""
    return f"wh_{secrets.token_hex(12)}"


def new_secret() -> str:
    """A new signing secret: ``whsec_`` and 43 URL-safe characters (256 random bits)."""
    return f"whsec_{secrets.token_urlsafe(32)}"


class WebhookFilters(BaseModel):
    """Which of the agent's messages a webhook gets; every filter given must match.

    Attributes:
        performatives: Only these acts; empty: every act.
        message_type: Only messages of this dotted type; ``*`` matches one token and ``>``
            the rest, as in ``Agent.on(message_type=)``.
        topic: Only messages published on a topic matching this pattern; the agent
            subscribes to the pattern.
        group: Only messages sent to this group; the agent joins the group.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    performatives: tuple[Performative, ...] = Field(default=(), max_length=len(Performative))
    message_type: _Pattern | None = None
    topic: _Pattern | None = None
    # 64, not an id's 128: the group consumer's name holds the group and the agent id, and
    # must fit in 128 characters itself; a longer agent id can still leave too little room.
    group: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None

    @field_validator("message_type", "topic")
    @classmethod
    def _dotted_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            validate_topic(value, pattern=True)  # its InvalidIdentifier is a ValueError
        return value

    @field_validator("group")
    @classmethod
    def _group_id(cls, value: str | None) -> str | None:
        if value is not None:
            validate_id(value, "group")
        return value

    def matches(self, msg: ACLMessage, group_subject: str | None) -> bool:
        """Whether ``msg``, delivered on ``group_subject``'s group or not, passes the filters.

        Args:
            msg: The message.
            group_subject: The subject of ``group`` when the delivery came on it, else None.
        """
        if self.performatives and msg.performative not in self.performatives:
            return False
        if self.message_type is not None and not (
            msg.message_type is not None and subject_matches(self.message_type, msg.message_type)
        ):
            return False
        if self.topic is not None and not (
            msg.topic is not None and subject_matches(self.topic, msg.topic)
        ):
            return False
        return self.group is None or group_subject is not None


class WebhookRequest(WebhookFilters):
    """The body of ``POST /communication/handlers``.

    Attributes:
        url: Where matching messages are POSTed: an ``http`` or ``https`` URL.
    """

    # The bound is on the URL as given, and in the OpenAPI document (maxLength) too.
    url: Annotated[HttpUrl, UrlConstraints(max_length=2048)] = Field(
        description="an http or https URL the gateway POSTs messages to"
    )


class WebhookView(WebhookFilters):
    """A webhook as ``GET /communication/handlers`` shows it (never with its secret).

    Attributes:
        id: Its id.
        agent: The agent whose messages it gets.
        url: Where they are POSTed.
        created: When it was registered (UTC).
    """

    id: str
    agent: str
    url: str
    created: datetime


class WebhookWithSecret(WebhookView):
    """A webhook just registered: the only answer that holds its signing secret.

    Attributes:
        secret: The key of the ``aclbus-signature`` HMAC; shown once, never again.
    """

    secret: str


class Registration(WebhookView):
    """A webhook as the gateway keeps it in the backend's KV, secret included.

    Attributes:
        secret: The key of its HMAC signature.
    """

    secret: str = Field(repr=False)

    @classmethod
    def make(cls, agent: str, request: WebhookRequest) -> Registration:
        """A new registration of ``request`` for ``agent``, with a fresh id and secret."""
        return cls(
            id=new_webhook_id(),
            agent=agent,
            url=str(request.url),
            created=datetime.now(UTC),
            secret=new_secret(),
            **request.model_dump(exclude={"url"}),
        )

    def view(self) -> WebhookView:
        """What may be shown of it: everything but the secret."""
        return WebhookView.model_validate(self.model_dump(exclude={"secret"}))

    def shown_once(self) -> WebhookWithSecret:
        """The answer to its registration, with the secret."""
        return WebhookWithSecret.model_validate(self.model_dump())

    def __repr__(self) -> str:
        return f"<webhook {self.id} of {self.agent}>"  # neither the secret nor the URL

    __str__ = __repr__
