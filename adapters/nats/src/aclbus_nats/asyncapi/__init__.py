"""The AsyncAPI 3.0 document of a bus on NATS: FastStream's, with the bus' agents added.

`BusAsyncAPI` is the ``specification`` of the app `aclbus_nats.app.make_app` builds: the
agents are added as plain documentation objects (`channels`), never as FastStream
subscribers, so documenting an agent cannot open a second subscription to its messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema

from aclbus.errors import ConfigurationError
from aclbus_nats.asyncapi.channels import add_agents
from aclbus_nats.asyncapi.schema import ACL_HEADERS_SCHEMA

if TYPE_CHECKING:
    from faststream.specification.base import Specification

    from aclbus import Bus

__all__ = ["ACL_HEADERS_SCHEMA", "BusAsyncAPI"]


class BusAsyncAPI(AsyncAPI):
    """FastStream's AsyncAPI 3.0 document, with the channels of the bus' agents added.

    Each agent has a durable inbox (``{prefix}.agent.{id}``, stream ``{PREFIX}_AGENT``), a
    request subject (``{prefix}.rpc.{id}``, answered on the requester's reply subject), a
    subscription to broadcasts (``{prefix}.broadcast``), one to each group it has joined
    (``{prefix}.group.{group}``: joining needs a running bus, so groups show in a document
    made while it runs) and one to each topic pattern it subscribes to
    (``{prefix}.topic.{pattern}``). Each handler is a message of its agent's operations: its
    performatives, message type and topic constrain ``ce-type``, ``acl-message-type`` and
    ``acl-topic``; its payload is the JSON schema of its ``payload=`` model (in
    ``components/schemas``, by the model's name), else any JSON.

    The agents are read at every `to_specification` call, so the document follows the bus.

    Args:
        bus: The bus whose agents to document.
        **kwargs: As ``faststream.specification.AsyncAPI`` (title, version, description, ...).
    """

    def __init__(self, bus: Bus, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bus = bus

    def to_specification(self) -> Specification:
        """FastStream's document of the broker, plus the agents' channels and operations.

        Raises:
            ConfigurationError: ``schema_version`` is not 3.x.
        """
        schema = super().to_specification()
        if not isinstance(schema, ApplicationSchema):
            raise ConfigurationError(
                f"aclbus documents its agents in AsyncAPI 3.0, not {self.schema_version!r}: "
                "leave app.schema.schema_version at '3.0.0'"
            )
        add_agents(schema, self.bus)
        return schema
