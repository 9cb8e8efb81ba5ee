"""The JSON codec's plugin: the core ships it as a default plugin, as a third party would."""

from __future__ import annotations

from aclbus.codec import JsonCodec
from aclbus.plugin import hookimpl
from aclbus.plugin.spec import CodecRegister

__all__ = ["aclbus_register_codecs"]


@hookimpl
def aclbus_register_codecs(register: CodecRegister) -> None:
    """Register the JSON codec."""
    register(JsonCodec())
