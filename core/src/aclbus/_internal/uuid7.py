"""UUID version 7 (RFC 9562): time-ordered ids, so message ids sort by creation time."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_prefix = ""  # the text of an id of millisecond _prefix_ms up to rand_a: "tttttttt-tttt-7"
_prefix_ms = -1

_POOL_IDS = 256
"""Ids' worth of random hex digits drawn from the OS at once: one system call per 256 ids,
not one each (it was the largest part of making an id)."""
_pool = ""
_offset = 0
# rand_b's first hex digit carries the variant (0b10) in its top two bits.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def _forget_pool() -> None:
    # A forked child must not hand out the random digits its parent hands out too.
    global _pool, _offset
    _pool, _offset = "", 0


os.register_at_fork(after_in_child=_forget_pool)


def new_id() -> str:
    """Return a new UUIDv7 as its canonical string (``8-4-4-4-12`` lower-case hex digits).

    Monotonic within this process: the 12-bit ``rand_a`` field carries a counter inside one
    millisecond (RFC 9562, method 1), so ids made in the same millisecond still sort in the
    order they were made; ``rand_b`` comes from the OS' random source (a CSPRNG, as RFC 9562
    recommends). The text is put together from pieces rather than formatted from a 128-bit
    integer, which costs twice as much.
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
        if _prefix_ms != _last_ms:
            _set_prefix(_last_ms)
        if _offset >= len(_pool):
            _pool, _offset = os.urandom(8 * _POOL_IDS).hex(), 0
        rand = _pool[_offset : _offset + 16]
        _offset += 16
        return f"{_prefix}{_counter:03x}-{_VARIANT[rand[0]]}{rand[1:4]}-{rand[4:]}"


def _set_prefix(ms: int) -> None:
    global _prefix, _prefix_ms
    text = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
    _prefix, _prefix_ms = f"{text[:8]}-{text[8:]}-7", ms


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7, monotonic within this process."""
    return uuid.UUID(new_id())
