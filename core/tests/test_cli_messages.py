"""``aclbus send``, ``request`` and ``listen`` in-process (click's CliRunner), on memory buses.

The memory backend lives in one process, so the responders and the senders these tests need
are on the bus the command runs on: `CommandContext` gives the command a bus of the test's
making. Real processes on a real nats-server: adapters/nats/tests/test_cli_messages.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.cli import main
from aclbus.cli_bus import CommandContext, ExitCode
from aclbus.settings import Settings


def _invoke(args: list[str], make_bus: Callable[[], Bus] | None = None, **kw: Any) -> Result:
    obj = CommandContext(make_bus=make_bus) if make_bus is not None else None
    return CliRunner().invoke(main, args, obj=obj, **kw)


def _settings() -> Settings:
    return Settings(backend="memory", request_timeout=5)


def _responder() -> Bus:
    """A bus whose agent ``worker`` agrees, refuses, fails to answer, or sleeps."""
    bus = Bus(_settings(), entry_points=False)
    worker = bus.agent("worker")

    @worker.on(Performative.REQUEST)
    async def handle(msg: ACLMessage) -> ACLMessage:
        if msg.payload == "refuse":
            return msg.reply(Performative.REFUSE, payload="not today")
        if msg.payload == "slow":
            await asyncio.sleep(1.0)  # beyond the request's --timeout
        return msg.reply(
            Performative.AGREE, payload={"echo": msg.payload, "type": msg.message_type}
        )

    return bus


class _Chatty(Bus):
    """A bus on which alice has sent bob three messages (and one to a topic) when it starts."""

    async def start(self) -> None:
        await super().start()
        for i, (act, kind) in enumerate([("inform", "t.a"), ("request", "t.a"), ("inform", "t.b")]):
            await self.send(
                ACLMessage(
                    performative=act,
                    sender_id="alice",
                    receiver_id="bob",
                    message_type=kind,
                    payload={"n": i},
                )
            )
        await self.publish(
            ACLMessage(performative="inform", sender_id="alice", payload="news"), topic="news.eu"
        )


# -- send ------------------------------------------------------------------------------------


def test_send_prints_the_message_id_and_where_the_broker_stored_it() -> None:
    result = _invoke(["send", "bob", "hello", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["to"] == "bob"
    assert out["acks"] == [
        {"receiver": "bob", "stream": "ACLBUS_AGENT", "sequence": 1, "duplicate": False}
    ]
    assert len(out["message_id"]) == 36
    # nobody else hears a memory bus: the command says so
    assert "memory backend lives in this process" in result.stderr

    human = _invoke(["send", "bob,carol", "hi"])
    assert human.exit_code == 0, human.output
    assert "to bob, carol: stream ACLBUS_AGENT seq 1; stream ACLBUS_AGENT seq 2" in human.stdout


@pytest.mark.parametrize(
    ("args", "stream"),
    [
        (["--topic", "orders.eu", "x"], "ACLBUS_TOPIC"),
        (["--group", "crew", "x"], "ACLBUS_GROUP"),
        (["--broadcast"], "ACLBUS_BROADCAST"),
    ],
)
def test_send_to_a_topic_a_group_or_everyone(args: list[str], stream: str) -> None:
    result = _invoke(["send", *args, "--json"])
    assert result.exit_code == 0, result.output
    (ack,) = json.loads(result.stdout)["acks"]
    assert ack["stream"] == stream


def test_send_builds_the_message_from_the_options() -> None:
    """What the options say arrives: listened to on the same bus, with --replay."""
    seen: list[ACLMessage] = []

    class Recording(Bus):
        async def stop(self) -> None:
            seen.extend(await _stored(self, "ACLBUS_AGENT"))
            await super().stop()

    result = _invoke(
        [
            "send",
            "bob",
            "-",
            "--json-content",
            "-p",
            "propose",
            "--as",
            "alice",
            "--type",
            "deal.offer",
            "--ontology",
            "trade",
            "--language",
            "json",
            "--header",
            "x-trace=42",
        ],
        lambda: Recording(_settings(), entry_points=False),
        input='{"price": 3}',
    )
    assert result.exit_code == 0, result.output
    (msg,) = seen
    assert (msg.performative, msg.sender_id, msg.receiver_id) == ("propose", "alice", "bob")
    assert (msg.message_type, msg.ontology, msg.language) == ("deal.offer", "trade", "json")
    assert msg.headers == {"x-trace": "42"}
    assert msg.payload == {"price": 3}


async def _stored(bus: Bus, stream: str) -> list[ACLMessage]:
    return [
        wire.decode(m.headers, m.body, bus.codecs)
        for m in await bus.backend.read_stream(stream, limit=10)
    ]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["send", "bad id", "x"], "invalid agent id 'bad id'"),
        (["send", "bob", "x", "--as", "a.b"], "invalid agent id 'a.b'"),
        (["send", "--group", "g g", "x"], "invalid group 'g g'"),
        (["send", "--topic", "a.*", "x"], "invalid topic"),
        (["send", "bob", "{nope", "--json-content"], "not JSON"),
        (["send", "bob", "x", "--header", "novalue"], "'novalue' is not NAME=VALUE"),
        (["send", "bob", "x", "--header", "Upper=1"], "headers"),
        (["send", "bob", "x", "-p", "shout"], "'shout' is not one of"),
        (["send", "--topic", "a.b", "--group", "g", "x"], "one of --topic, --group"),
        (["send"], "give RECEIVER"),
        (["send", "--broadcast", "a", "b"], "give CONTENT only"),
        (["request", "bad/id"], "invalid agent id 'bad/id'"),
        (["request", "worker", "--timeout", "0"], "--timeout"),
        (["listen"], "at least one of --agent"),
        (["listen", "--topic", "a..b"], "invalid topic"),
    ],
)
def test_bad_input_is_a_usage_error_naming_what_is_wrong(args: list[str], problem: str) -> None:
    result = _invoke(args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert problem in result.stderr
    assert "Traceback" not in result.output


def test_secrets_in_the_settings_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that would show the settings shows them masked."""
    monkeypatch.setenv("ACLBUS_BACKEND", "nats")
    monkeypatch.setenv("ACLBUS_NATS__SERVERS", "nats://user:hunter2pass@127.0.0.1:9")
    monkeypatch.setenv("ACLBUS_NATS__CONNECT_TIMEOUT", "0.2")
    monkeypatch.setenv("ACLBUS_PLUGINS", "nats")
    result = _invoke(["send", "bob", "x"])
    assert result.exit_code == ExitCode.ERROR, result.output
    assert "cannot connect" in result.stderr
    assert "hunter2pass" not in result.output


# -- request ---------------------------------------------------------------------------------


def test_request_prints_the_reply_and_exits_0() -> None:
    result = _invoke(["request", "worker", "hi", "--type", "q.a", "--json"], _responder)
    assert result.exit_code == ExitCode.OK, result.output
    reply = json.loads(result.stdout)
    assert reply["performative"] == "agree"
    assert reply["sender_id"] == "worker"
    assert reply["receiver_id"] == "cli"
    assert reply["payload"] == {"echo": "hi", "type": "q.a"}

    human = _invoke(["request", "worker", "hi"], _responder)
    assert human.exit_code == ExitCode.OK, human.output
    assert "agree worker → cli" in human.stdout
    assert '"echo": "hi"' in human.stdout


def test_request_exit_codes_by_outcome() -> None:
    refused = _invoke(["request", "worker", "refuse"], _responder)
    assert refused.exit_code == ExitCode.REFUSED, refused.output
    assert "refuse worker → cli: not today" in refused.stdout  # the refusal is printed

    nobody = _invoke(["request", "nobody", "hi"], _responder)
    assert nobody.exit_code == ExitCode.NO_RESPONDER, nobody.output
    assert "no responders on 'aclbus.rpc.nobody'" in nobody.stderr

    slow = _invoke(["request", "worker", "slow", "--timeout", "0.2"], _responder)
    assert slow.exit_code == ExitCode.TIMEOUT, slow.output
    assert "no reply on 'aclbus.rpc.worker' within 0.2 s" in slow.stderr


# -- listen ----------------------------------------------------------------------------------


def test_listen_replays_filters_and_counts_as_json_lines() -> None:
    result = _invoke(
        ["listen", "--agent", "bob", "--replay", "--type", "t.a", "--count", "2", "--json"],
        lambda: _Chatty(_settings(), entry_points=False),
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(m["performative"], m["payload"]) for m in lines] == [
        ("inform", {"n": 0}),
        ("request", {"n": 1}),
    ]
    assert {m["message_type"] for m in lines} == {"t.a"}


def test_listen_filters_by_performative_and_follows_topics_in_human_lines() -> None:
    result = _invoke(
        [
            "listen",
            "--agent",
            "bob",
            "--topic",
            "news.>",
            "--replay",
            "-p",
            "inform",
            "--timeout",
            "0.5",
        ],
        lambda: _Chatty(_settings(), entry_points=False),
    )
    assert result.exit_code == 0, result.output  # no --count: the timeout is a normal stop
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines
    assert any('inform alice → bob t.a: {"n": 0}' in line for line in lines)
    assert any("inform alice → topic news.eu: news" in line for line in lines)
    assert not any("request" in line for line in lines)


def test_listen_exits_3_when_count_is_not_reached_in_time() -> None:
    result = _invoke(
        ["listen", "--agent", "bob", "--replay", "--count", "5", "--timeout", "0.3"],
        lambda: _Chatty(_settings(), entry_points=False),
    )
    assert result.exit_code == ExitCode.TIMEOUT, result.output
    assert "3 of 5 message(s) within 0.3 s" in result.stderr
