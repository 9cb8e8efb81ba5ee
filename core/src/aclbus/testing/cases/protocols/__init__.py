"""The FIPA interaction protocols on a bus: Request, Query, Contract Net, Subscribe, Cancel.

One module per protocol, plus the cancel meta-protocol and robustness (strays, bad input).
Deadlines here are real time (a few tenths of a second), on every backend: the protocols
time their steps with the event loop, as they do in production.
"""

from __future__ import annotations

from aclbus.testing.cases.protocols.cancel import CancelTestcase
from aclbus.testing.cases.protocols.contract_net import ContractNetTestcase
from aclbus.testing.cases.protocols.query import QueryProtocolTestcase
from aclbus.testing.cases.protocols.request import RequestProtocolTestcase
from aclbus.testing.cases.protocols.robustness import ProtocolRobustnessTestcase
from aclbus.testing.cases.protocols.subscribe import SubscribeProtocolTestcase

__all__ = [
    "CancelTestcase",
    "ContractNetTestcase",
    "ProtocolRobustnessTestcase",
    "QueryProtocolTestcase",
    "RequestProtocolTestcase",
    "SubscribeProtocolTestcase",
]
