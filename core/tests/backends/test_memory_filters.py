"""A stream finds the consumers and waiting lanes of a message by filter, without a scan."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from aclbus.backend import StreamSpec
from aclbus.backends.memory import ManualClock
from aclbus.backends.memory import filters as filters_module
from aclbus.backends.memory import stream as stream_module
from aclbus.backends.memory.filters import FilterIndex
from aclbus.backends.memory.stream import Stream


@dataclass
class Seen:
    name: str
    filter: str
    seqs: list[int] = field(default_factory=list)

    def notify(self, seq: int) -> None:
        self.seqs.append(seq)

    def discard(self, seq: int, *, reason: str) -> None:
        pass

    def discard_through(self, last_seq: int) -> None:
        pass


def test_the_index_finds_literal_and_wildcard_filters_in_the_order_added() -> None:
    index: FilterIndex[str] = FilterIndex()
    first = index.add("a.*", "wild-first")
    index.add("a.b", "literal")
    index.add("a.>", "wild-last")
    index.add("a.c", "other")
    assert index.matching("a.b") == ["wild-first", "literal", "wild-last"]
    assert index.matching("a.c.d") == ["wild-last"]
    assert index.matching("b") == []
    index.remove(first)
    index.remove(first)  # harmless
    assert index.matching("a.b") == ["literal", "wild-last"]
    assert len(index) == 3


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    real = filters_module.subject_matches

    def counting(pattern: str, subject: str) -> bool:
        calls.append((pattern, subject))
        return real(pattern, subject)

    for module in (filters_module, stream_module):
        monkeypatch.setattr(module, "subject_matches", counting)
    return calls


def test_a_message_to_one_of_many_inboxes_is_matched_against_no_other(
    counted: list[tuple[str, str]],
) -> None:
    stream: Stream[Seen] = Stream(StreamSpec("IN", ("in.>",)), ManualClock())
    inboxes = [Seen(f"c{i}", f"in.a{i}") for i in range(1000)]
    for consumer in inboxes:
        stream.attach(consumer)
    woken: list[int] = []
    cancels = [
        stream.wait(f"in.a{i}.high", lambda i=i: woken.append(i) is None) for i in range(1000)
    ]
    watcher = Seen("all", "in.>")
    stream.attach(watcher)
    stream.store("in.a7", {}, b"x", 1)
    stream.store("in.a9.high", {}, b"x", 1)
    assert [c.name for c in inboxes if c.seqs] == ["c7"]
    assert watcher.seqs == [1, 2]
    assert woken == [9]
    # only the one wildcard consumer was matched, once per message
    assert counted == [("in.>", "in.a7"), ("in.>", "in.a9.high")]
    for cancel in cancels:
        cancel()
    stream.detach(inboxes[7])
    stream.store("in.a7", {}, b"x", 1)
    assert inboxes[7].seqs == [1]
    assert watcher.seqs == [1, 2, 3]
