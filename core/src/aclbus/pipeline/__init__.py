"""The two pipelines every message goes through: out (`PublishPipeline`), in (`ConsumePipeline`).

Out: the publish (or request) middleware chain, then encoding, then the backend. In: the
backend's delivery, decoding, routing to the agent's handler, the consume middleware chain,
the handler, and settling (ack, or the dead-letter queue and a term). The bus makes one of
each and composes their chains once, when it starts; with no plugin middleware a chain is a
direct call.
"""

from __future__ import annotations

from aclbus.pipeline.consume import ConsumePipeline, RouteTable
from aclbus.pipeline.publish import PublishPipeline, Sender

__all__ = ["ConsumePipeline", "PublishPipeline", "RouteTable", "Sender"]
