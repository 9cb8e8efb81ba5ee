"""UUID version 7 (RFC 9562): time-ordered ids, so message ids sort by creation time."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0

_POOL_IDS = 256
"""Ids' worth of random bits drawn from the OS at once: one system call per 256 ids, not one
each (it was the largest part of making an id)."""
_pool = b""
_offset = 0
_RAND_B = (1 << 62) - 1
_MS = (1 << 48) - 1


def _forget_pool() -> None:
    # A forked child must not hand out the random bits its parent hands out too.
    global _pool, _offset
    _pool, _offset = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def _next() -> int:
    """The next UUIDv7 as an integer, monotonic within this process.

    The 12-bit ``rand_a`` field carries a counter inside one millisecond (RFC 9562, method 1),
    so ids made in the same millisecond still sort in the order they were made; ``rand_b`` comes
    from the OS' random source (a CSPRNG, as RFC 9562 recommends).
    """
    global _last_ms, _counter, _pool, _offset
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2)) & 0x3FF  # leave headroom for the counter
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
        if _offset >= len(_pool):
            _pool, _offset = os.urandom(8 * _POOL_IDS), 0
        rand_b = int.from_bytes(_pool[_offset : _offset + 8]) & _RAND_B
        _offset += 8
    return (ms & _MS) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7, monotonic within this process."""
    return uuid.UUID(int=_next())


def new_id() -> str:
    """Return a new UUIDv7 as its canonical string (``8-4-4-4-12`` lower-case hex digits)."""
    h = f"{_next():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
