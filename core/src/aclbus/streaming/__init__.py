"""Streams: items sent one by one with flow control, chunking and cancellation.

Two patterns, one wire protocol (`aclbus.streaming.flow`):

- streamed replies: a handler written as an async generator yields its results (tokens,
  partial results); the requester reads them with ``async for reply in
  bus.request_stream(msg)``; leaving the loop cancels the producer;
- pushed streams: ``await bus.send_stream(msg, items)`` sends items to an agent's
  `on_stream` handler, which reads them as they come.

Flow control is by credit: a sender has at most ``window`` frames unacknowledged, so a slow
reader holds the producer back and memory stays bounded. An item larger than a message is cut
into numbered chunks with a SHA-256 and put back together. Streams are ``at_most_once``: every
frame is numbered, and a lost or repeated frame breaks the stream with `StreamBroken` instead
of being repaired.
"""

from __future__ import annotations

from aclbus.streaming._link import DEFAULT_WINDOW
from aclbus.streaming.errors import (
    BadFrame,
    StreamBroken,
    StreamCancelled,
    StreamError,
    StreamFailed,
    StreamRefused,
    StreamTimeout,
)
from aclbus.streaming.flow import Frame, FrameKind
from aclbus.streaming.receiver import (
    DEFAULT_MAX_ITEM_BYTES,
    FlowReceiver,
    on_stream,
    serve_push,
)
from aclbus.streaming.reply import ReplyStream, request_stream, serve
from aclbus.streaming.sender import FlowSender, StreamReport, send_stream

__all__ = [
    "DEFAULT_MAX_ITEM_BYTES",
    "DEFAULT_WINDOW",
    "BadFrame",
    "FlowReceiver",
    "FlowSender",
    "Frame",
    "FrameKind",
    "ReplyStream",
    "StreamBroken",
    "StreamCancelled",
    "StreamError",
    "StreamFailed",
    "StreamRefused",
    "StreamReport",
    "StreamTimeout",
    "on_stream",
    "request_stream",
    "send_stream",
    "serve",
    "serve_push",
]
