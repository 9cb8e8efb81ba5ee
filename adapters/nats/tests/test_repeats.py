"""Header blocks seen before (`aclbus_nats.repeats`): read and written as the full way does.

The tables only ever save work: for any block, what the reader gives (when it gives anything)
is what `parse_header_lines` gives, defect included; for any headers, what the writer writes
is what `header_block` writes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aclbus import wire
from aclbus.acl import ACLMessage
from aclbus.codec import CodecRegistry, JsonCodec
from aclbus_nats.headers import NatsHeaders, header_block, parse_header_lines, read_header_block
from aclbus_nats.repeats import BlockReader, BlockWriter

CODECS = CodecRegistry([JsonCodec()])
BOUNDED = settings(max_examples=300, deadline=None)

_VALUES = [b"m-1", b" m-1 ", b"", b"2026-01-31T12:00:00.000000Z", b"a:b", b"\xc3\xa9", b"\t"]
_VALUES += [b"x\x00y", b"\x7f", b"CE-ID: m-2"]
_LINES = [
    b"acl-caused-by: m-0\r\n",  # a varying header: first after ce-time, or among the others
    b"acl-correlation-id: c-1\r\n",
    b"ACL-In-Reply-To: q-1\r\n",
    b"ce-specversion: 1.0\r\n",
    b"ce-source: alice\r\n",
    b"ce-type: fipa.acl.inform\r\n",
    b"acl-receiver-id: bob\r\n",
    b"x-a: 1\r\n",
    b"X-A: 2\r\n",
    b"ce-id: m-9\r\n",  # the id again, lower or upper case
    b"CE-TIME: 2026-01-31T12:00:00.000000Z\r\n",
    b"bad name: x\r\n",
    b"no colon\r\n",
    b"Nats-Msg-Id: m-1\r\n",  # a server header among the others
    b"nats-x: y\r\n",
    b"content-type: application/json\r\n",
]
_SERVER = [
    b"",
    b"Nats-Msg-Id: m-1\r\n",
    b"Nats-Msg-Id: m-1\r\nNats-TTL: 5s\r\n",
    b"Nats-Msg-Id: m-1\r\nNats-Msg-Id: m-2\r\n",
    b"Nats-Bad Name: x\r\n",
    b"Nats-Msg-Id: \xc3\xa9\r\n",
    b"Nats-Msg-Id:\r\n",
    b"Nats-Msg-Id: m-1\r\nx-after: 1\r\n",
]

aclbus_shaped = st.builds(
    lambda i, t, rest, server, end: (
        b"NATS/1.0\r\nce-id: " + i + b"\r\nce-time: " + t + b"\r\n" + rest + server + end
    ),
    st.sampled_from(_VALUES),
    st.sampled_from(_VALUES),
    st.lists(st.sampled_from(_LINES), max_size=7).map(b"".join),
    st.sampled_from(_SERVER),
    st.sampled_from([b"\r\n", b"", b"\r\n\r\n"]),
)


def _full(block: bytes) -> Any:
    headers = parse_header_lines(block[10:])
    defect = headers.defect
    return dict(headers), None if defect is None else (defect.field, defect.problem)


def _seen(headers: NatsHeaders) -> Any:
    assert isinstance(headers, NatsHeaders)
    assert headers.defect is None  # the reader takes only blocks without one
    return dict(headers), None


@BOUNDED
@given(aclbus_shaped, aclbus_shaped)
def test_a_block_read_from_the_table_is_the_block_read_in_full(first: bytes, then: bytes) -> None:
    reader = BlockReader(parse_header_lines, NatsHeaders)
    for block in (first, then, first, then):  # the second reading of each may be a repeat
        got = reader.read(block)
        if got is not None:
            assert _seen(got) == _full(block)


@BOUNDED
@given(
    st.sampled_from(_VALUES),
    st.sampled_from(_VALUES),
    st.sampled_from(_SERVER),
)
def test_a_known_rest_with_any_varying_lines_reads_as_in_full(
    ce_id: bytes, ce_time: bytes, server: bytes
) -> None:
    reader = BlockReader(parse_header_lines, NatsHeaders)
    rest = b"ce-specversion: 1.0\r\nce-source: alice\r\nce-type: fipa.acl.inform\r\n"
    known = b"NATS/1.0\r\nce-id: m-1\r\nce-time: 2026-01-31T12:00:00.000000Z\r\n" + rest
    assert reader.read(known + b"\r\n") is not None  # learned
    block = b"NATS/1.0\r\nce-id: " + ce_id + b"\r\nce-time: " + ce_time + b"\r\n"
    block += rest + server + b"\r\n"
    got = reader.read(block)
    if got is not None:
        assert _seen(got) == _full(block)


def test_the_connection_reads_an_aclbus_block_from_the_table() -> None:
    msg = ACLMessage(performative="inform", sender_id="alice", receiver_id="bob", payload=1)
    headers, body = wire.encode(msg, CODECS)
    headers["Nats-Msg-Id"] = msg.message_id
    block = header_block(headers)
    assert block is not None
    first, again = read_header_block(block), read_header_block(block)
    assert first == again == headers
    assert isinstance(again, NatsHeaders)
    assert again.defect is None
    assert wire.decode(again, body, CODECS) == msg


_names = st.sampled_from(
    ["ce-id", "ce-time", "ce-source", "x-a", "Nats-Msg-Id", "Nats-TTL", "a b", "acl-caused-by"]
)
_texts = st.sampled_from(
    [
        "m-1",
        " m-1",
        "",
        "é",
        "a\r\nb",
        "\t",
        "x\x00y",
        "y ",
        "2026-01-31T12:00:00.000000Z",
        "x" * 40,
    ]
)


@BOUNDED
@given(
    st.builds(
        lambda msg: wire.encode(msg, CODECS)[0],
        st.builds(
            ACLMessage,
            performative=st.sampled_from(["inform", "request"]),
            sender_id=st.sampled_from(["alice", "bob"]),
            receiver_id=st.sampled_from([None, "bob"]),
        ),
    ),
    st.dictionaries(_names, _texts, max_size=3),
    st.lists(st.tuples(st.sampled_from(["Nats-Msg-Id", "Nats-TTL"]), _texts), max_size=2),
)
def test_a_block_written_from_the_table_is_the_block_written_in_full(
    headers: dict[str, str], change: dict[str, str], server: list[tuple[str, str]]
) -> None:
    writer = BlockWriter(header_block)
    headers.update(change)
    headers.update(server)
    for _ in range(2):  # the second time, the repeating lines come from the table
        got = writer.write(headers)
        if got is not None:
            assert got == header_block(headers)


def test_unhashable_values_are_left_to_the_full_writer() -> None:
    writer = BlockWriter(header_block)
    headers: dict[str, Any] = {"ce-id": "m-1", "ce-time": "t", "x-a": ["not", "text"]}
    assert writer.write(headers) is None


def test_a_reply_with_a_new_id_to_answer_reads_from_the_table() -> None:
    """A reply names the request it answers; the rest of its block is the last reply's."""
    reader = BlockReader(parse_header_lines, NatsHeaders)
    rest = b"ce-specversion: 1.0\r\nce-source: bob\r\nce-type: fipa.acl.inform\r\n"
    blocks = [
        b"NATS/1.0\r\nce-id: r-%d\r\nce-time: 2026-01-31T12:00:00.000000Z\r\n"
        b"acl-correlation-id: q-%d\r\nacl-in-reply-to: q-%d\r\nacl-caused-by: q-%d\r\n"
        % (i, i, i, i)
        + rest
        + b"\r\n"
        for i in range(3)
    ]
    for block in blocks:
        got = reader.read(block)
        assert got is not None
        assert _seen(got) == _full(block)
    assert len(reader._seen) == 1
