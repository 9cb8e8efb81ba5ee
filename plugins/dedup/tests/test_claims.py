"""The claim state machine on its own, on the memory engine's KV under a manual clock."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aclbus.backend import KeyValue, KVSpec
from aclbus.backends.memory import ManualClock, MemoryBackend
from aclbus_dedup import Claims, DedupStats, Outcome, Record, Status, claim_key
from aclbus_dedup.middleware import wall_clock

TIMEOUT = 10.0
WINDOW = 60.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest_asyncio.fixture
async def backend(clock: ManualClock) -> AsyncIterator[MemoryBackend]:
    async with MemoryBackend(clock=clock) as backend:
        await backend.provision(KVSpec("claims", ttl=WINDOW))
        yield backend


@pytest_asyncio.fixture
async def kv(backend: MemoryBackend) -> KeyValue:
    return await backend.kv("claims")


def claims(kv: KeyValue, backend: MemoryBackend, owner: str) -> Claims:
    return Claims(kv, timeout=TIMEOUT, now=wall_clock(backend), stats=DedupStats(), owner=owner)


async def record(kv: KeyValue, key: str) -> Record | None:
    entry = await kv.get(key)
    return None if entry is None else Record.decode(entry.value)


def test_keys_are_agent_dot_message_id_and_always_valid() -> None:
    assert claim_key("worker-1", "0193f1c2-aaaa_bb") == "worker-1.0193f1c2-aaaa_bb"
    odd = [claim_key("w", raw) for raw in ("a.b", "a b", "é", "x" * 300, "h=abc", "*", ">")]
    assert len(set(odd)) == len(odd)
    for key in odd:
        assert re.fullmatch(r"[-/_=A-Za-z0-9]+(\.[-/_=A-Za-z0-9]+)*", key), key
        assert len(key) < 64
    # a hashed token can never equal a plain id: plain ids have no "="
    assert claim_key("w", "h=abc") != "w.h=abc"


def test_records_round_trip_and_garbage_is_none() -> None:
    rec = Record(Status.PROCESSING, "host:1:ab", 1234.5)
    assert Record.decode(rec.encode()) == rec
    assert Record.decode(Record(Status.DONE, "o").encode()) == Record(Status.DONE, "o")
    for junk in (b"", b"{", b"[]", b'{"s": "weird"}', b"\xff", b'{"o": "x"}'):
        assert Record.decode(junk) is None


@pytest.mark.parametrize(
    "rec",
    [
        Record(Status.PROCESSING, "host:1:ab", 1767225600.123456, "7f"),
        Record(Status.PROCESSING, 'h\u00f6st "q"\\:2:cd', 12.0),
        Record(Status.DONE, "host:1:ab", token="a b\u00e9"),
        Record(Status.RELEASED, ""),
    ],
)
def test_records_are_the_compact_json_any_reader_expects(rec: Record) -> None:
    value: dict[str, object] = {"s": rec.status.value, "o": rec.owner}
    if rec.status is Status.PROCESSING:
        value["d"] = round(rec.deadline, 3)
    if rec.token:
        value["t"] = rec.token
    assert rec.encode() == json.dumps(value, separators=(",", ":")).encode()
    decoded = Record.decode(rec.encode())
    assert decoded == Record(rec.status, rec.owner, value.get("d", 0.0), rec.token)  # type: ignore[arg-type]
    assert decoded.token == rec.token


def test_a_record_names_the_claim_that_wrote_it() -> None:
    rec = Record(Status.PROCESSING, "host:1:ab", 1234.5, "7f")
    decoded = Record.decode(rec.encode())
    assert decoded is not None
    assert decoded.token == "7f"
    assert decoded.by("host:1:ab", "7f")
    assert not decoded.by("host:1:ab", "80")
    assert not decoded.by("other", "7f")
    assert not Record(Status.DONE, "o").by("o", "")  # an untokened record is nobody's own
    assert Record(Status.DONE, "o", token="1") == Record(Status.DONE, "o")  # says the same
    assert Record.decode(b'{"s":"done","o":"o"}') == Record(Status.DONE, "o")  # older records


async def test_a_retry_with_the_same_token_adopts_its_own_claim(
    kv: KeyValue, backend: MemoryBackend
) -> None:
    """A create that landed but whose caller never heard back: retried with the same token,
    it is the claim's own, not someone else's live claim."""
    a = claims(kv, backend, "a")
    first = await a.acquire("w", "m1", token="t1")
    again = await a.acquire("w", "m1", token="t1")
    assert again.outcome is Outcome.CLAIMED
    assert again.revision == first.revision
    other = await a.acquire("w", "m1", token="t2")  # same bus, another delivery: busy
    assert other.outcome is Outcome.BUSY
    await again.finish()
    assert (await record(kv, "w.m1")) == Record(Status.DONE, "a")


async def test_second_claimant_is_busy_until_done(kv: KeyValue, backend: MemoryBackend) -> None:
    a, b = claims(kv, backend, "a"), claims(kv, backend, "b")
    first = await a.acquire("w", "m1")
    assert first.outcome is Outcome.CLAIMED
    assert first.held
    busy = await b.acquire("w", "m1")
    assert busy.outcome is Outcome.BUSY
    assert busy.wait == pytest.approx(TIMEOUT)
    assert not busy.held
    await first.finish()
    assert (await record(kv, "w.m1")) == Record(Status.DONE, "a")
    assert (await b.acquire("w", "m1")).outcome is Outcome.DONE
    # another agent's run of the same message is its own
    assert (await b.acquire("other", "m1")).outcome is Outcome.CLAIMED
    assert a.stats.claimed == 1
    assert b.stats.claimed == 1


async def test_released_claim_is_claimed_again(kv: KeyValue, backend: MemoryBackend) -> None:
    a, b = claims(kv, backend, "a"), claims(kv, backend, "b")
    first = await a.acquire("w", "m1")
    await first.release()
    assert a.stats.released == 1
    assert (await record(kv, "w.m1")) == Record(Status.RELEASED, "a")
    again = await b.acquire("w", "m1")
    assert again.outcome is Outcome.CLAIMED
    assert b.stats.taken_over == 0
    await first.release()  # a second release of a claim given up is a no-op
    assert (await record(kv, "w.m1")).status is Status.PROCESSING  # type: ignore[union-attr]


async def test_stale_claim_is_taken_over_and_the_late_finish_is_lost(
    kv: KeyValue, backend: MemoryBackend, clock: ManualClock
) -> None:
    a, b = claims(kv, backend, "a"), claims(kv, backend, "b")
    first = await a.acquire("w", "m1")
    await clock.advance(TIMEOUT - 1)
    early = await b.acquire("w", "m1")
    assert early.outcome is Outcome.BUSY
    assert early.wait == pytest.approx(1.0)
    await clock.advance(1)
    late = await b.acquire("w", "m1")
    assert late.outcome is Outcome.TAKEN_OVER
    assert b.stats.taken_over == 1
    # the first claimant was only slow: its finish must not overwrite the new claim
    await first.finish()
    assert a.stats.lost == 1
    assert (await record(kv, "w.m1")) == Record(
        Status.PROCESSING,
        "b",
        pytest.approx(late.deadline),  # type: ignore[arg-type]
    )
    await late.finish()
    assert (await record(kv, "w.m1")) == Record(Status.DONE, "b")


async def test_extend_keeps_a_long_run_alive(
    kv: KeyValue, backend: MemoryBackend, clock: ManualClock
) -> None:
    a, b = claims(kv, backend, "a"), claims(kv, backend, "b")
    first = await a.acquire("w", "m1")
    await clock.advance(2)
    revision = first.revision
    await first.extend()  # 8 s left of 10: not worth a write yet
    assert first.revision == revision
    await clock.advance(5)
    await first.extend()  # 3 s left: pushed out to 10 s from now
    assert first.revision > revision
    await clock.advance(6)  # past the first deadline, before the extended one
    assert (await b.acquire("w", "m1")).outcome is Outcome.BUSY


async def test_unreadable_record_is_replaced(kv: KeyValue, backend: MemoryBackend) -> None:
    await kv.put("w.m1", b"not a claim")
    got = await claims(kv, backend, "a").acquire("w", "m1")
    assert got.outcome is Outcome.TAKEN_OVER


async def test_records_expire_after_the_window(
    kv: KeyValue, backend: MemoryBackend, clock: ManualClock
) -> None:
    a = claims(kv, backend, "a")
    done = await a.acquire("w", "m1")
    await done.finish()
    await clock.advance(WINDOW - 1)
    assert (await a.acquire("w", "m1")).outcome is Outcome.DONE
    await clock.advance(1)
    assert (await a.acquire("w", "m1")).outcome is Outcome.CLAIMED
