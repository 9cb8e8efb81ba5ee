"""The FIPA interaction protocols: Request, Query, Contract Net, Subscribe, and Cancel.

Each protocol has an initiator, one conversation driven to its outcome with a deadline per
step, and a responder, registered on an agent, that answers every conversation of its
protocol:

```python
RequestResponder(worker, perform=do_the_job, agree=True)
outcome = await request(client, "worker", {"job": 1}, deadline=2.0)
```

Conversations are matched on their id (``correlation_id``) and ``in_reply_to``; a message
that does not fit is answered ``not-understood`` and changes nothing. See
``docs/patterns/protocols.md``.
"""

from __future__ import annotations

from aclbus.protocols.contract_net import (
    ContractNet,
    ContractNetOutcome,
    ContractNetParticipant,
    contract_net,
)
from aclbus.protocols.conversation import (
    FIPA_CONTRACT_NET,
    FIPA_QUERY,
    FIPA_REQUEST,
    FIPA_SUBSCRIBE,
    Conversation,
    Outcome,
    Responder,
    StateMachine,
)
from aclbus.protocols.errors import (
    ConversationCancelled,
    InvalidDeadline,
    NotUnderstood,
    OutOfSequence,
    ProtocolError,
    ProtocolFailure,
    ProtocolTimeout,
    Refused,
    SequenceGap,
)
from aclbus.protocols.query import Query, QueryResponder, query
from aclbus.protocols.request import Request, RequestResponder, request
from aclbus.protocols.subscribe import (
    SEQUENCE_HEADER,
    FipaSubscription,
    SubscribePublisher,
    subscribe,
)

__all__ = [
    "FIPA_CONTRACT_NET",
    "FIPA_QUERY",
    "FIPA_REQUEST",
    "FIPA_SUBSCRIBE",
    "SEQUENCE_HEADER",
    "ContractNet",
    "ContractNetOutcome",
    "ContractNetParticipant",
    "Conversation",
    "ConversationCancelled",
    "FipaSubscription",
    "InvalidDeadline",
    "NotUnderstood",
    "Outcome",
    "OutOfSequence",
    "ProtocolError",
    "ProtocolFailure",
    "ProtocolTimeout",
    "Query",
    "QueryResponder",
    "Refused",
    "RequestResponder",
    "Request",
    "Responder",
    "SequenceGap",
    "StateMachine",
    "SubscribePublisher",
    "contract_net",
    "query",
    "request",
    "subscribe",
]
