"""Signed envelopes on the memory engine and on a real nats-server, the same cases on both.

`SigningCases` holds the behaviour; `TestOnMemory` and `TestOnNats` run it on each backend
(the conformance kit's configs). Every bus gets the plugin explicitly and its settings from an
``aclbus.toml`` the test writes (the conftest moves each test into its own directory). Forged,
altered, replayed and stale messages are published raw, through the backend, as an attacker
with publish rights on the subject would.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w

import aclbus_signing
from aclbus import ACLMessage, AgentDescription, Bus, Delivery, Performative, wire
from aclbus.backend import DeliveryMode
from aclbus.errors import ConfigurationError
from aclbus.testing import MemoryConfig, eventually
from aclbus_nats.testing import NatsConfig
from aclbus_signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    InvalidKey,
    PrivateKey,
    Signing,
    canonical,
    signing_input,
    with_signing_keys,
)
from aclbus_signing.keys import b64url

WAIT = 10.0


@dataclass
class Keys:
    """The test's agents' keys, their seed files, and the pinned key file."""

    alice: PrivateKey
    alice_next: PrivateKey
    bob: PrivateKey
    mallory: PrivateKey
    files: dict[str, Path]
    pinned: Path

    def seeds(self) -> list[str]:
        return [k.seed_text() for k in (self.alice, self.alice_next, self.bob, self.mallory)]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    made = {name: PrivateKey.generate() for name in ("alice", "alice_next", "bob", "mallory")}
    files: dict[str, Path] = {}
    for name, key in made.items():
        path = tmp_path / f"{name}.seed"
        path.write_text(key.seed_text() + "\n")
        path.chmod(0o600)
        files[name] = path
    pinned = tmp_path / "keys.toml"
    pinned.write_text(
        tomli_w.dumps(
            {
                "alice": [made["alice"].key_id],
                "bob": [made["bob"].key_id],
                "mallory": [made["mallory"].key_id],
            }
        )
    )
    return Keys(files=files, pinned=pinned, **made)


def configure(keys: Keys, **signing: Any) -> None:
    """Write ./aclbus.toml: alice and bob sign with their keys; the pinned file; ``signing``."""
    table: dict[str, Any] = {
        "mode": "require",
        "keys_file": str(keys.pinned),
        "agent_key_files": {"alice": str(keys.files["alice"]), "bob": str(keys.files["bob"])},
    }
    table.update(signing)
    table = {k: v for k, v in table.items() if v is not None}
    Path("aclbus.toml").write_text(tomli_w.dumps({"signing": table}))


def inform(sender: str = "alice", receiver: str | None = "bob", **fields: Any) -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM, sender_id=sender, receiver_id=receiver, **fields
    )


def sign(bus: Bus, msg: ACLMessage, key: PrivateKey) -> tuple[dict[str, str], bytes]:
    """``msg`` encoded and signed with ``key``, as a sender following the wire format would."""
    headers, body = wire.encode(msg, bus.codecs)
    form = canonical(headers, body)
    headers[KEY_HEADER] = key.key_id
    headers[SIGNATURE_HEADER] = b64url(key.sign(signing_input(form)))
    return headers, body


async def publish_raw(bus: Bus, agent: str, headers: dict[str, str], body: bytes) -> None:
    await bus.backend.publish(
        bus.subjects.inbox(agent),
        headers,
        body,
        mode=DeliveryMode.AT_LEAST_ONCE,
        msg_id=uuid.uuid4().hex,  # a new stored message each time, as a replayer would make
    )


class Recorder:
    """The messages each agent's handler got, with their deliveries."""

    def __init__(self, bus: Bus, *agents: str) -> None:
        self.got: dict[str, list[Delivery]] = {a: [] for a in agents}
        for agent in agents:
            self._listen(bus, agent)

    def _listen(self, bus: Bus, agent: str) -> None:
        @bus.agent(agent).on()
        async def handle(msg: ACLMessage, delivery: Delivery) -> None:
            self.got[agent].append(delivery)

    def ids(self, agent: str) -> list[str]:
        return [d.message.message_id for d in self.got[agent]]


class SigningCases:
    """What signing does, whatever the backend (mixed with a backend config)."""

    make_bus: Any
    advance: Any

    def signing_bus(self, keys: Keys, **signing: Any) -> Bus:
        configure(keys, **signing)
        bus: Bus = self.make_bus(plugins=[aclbus_signing])
        return bus

    async def refused(self, bus: Bus, count: int = 1) -> list[Any]:
        """Wait for ``count`` dead letters (the counter moves before the letter is stored)."""

        async def stored() -> bool:
            return len(await bus.dead_letters.list()) >= count

        await eventually(stored, timeout=WAIT, what=f"{count} dead letter(s)")
        letters = await bus.dead_letters.list()
        assert len(letters) == count
        assert aclbus_signing.stats(bus).refused == count
        return letters

    async def test_a_signed_message_is_verified_before_its_handler_runs(self, keys: Keys) -> None:
        bus = self.signing_bus(keys)
        rec = Recorder(bus, "bob")
        async with bus:
            msg = inform(payload={"n": 1})
            await bus.send(msg)
            await eventually(lambda: rec.got["bob"], timeout=WAIT, what="bob handles it")
            stats = aclbus_signing.stats(bus)
        (delivery,) = rec.got["bob"]
        assert delivery.message.payload == {"n": 1}
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        assert headers[KEY_HEADER] == keys.alice.key_id
        assert len(headers[SIGNATURE_HEADER]) == 86
        assert (stats.signed, stats.verified, stats.refused) == (1, 1, 0)

    async def test_an_unsigned_message_is_dead_lettered_and_nobody_is_answered(
        self, keys: Keys
    ) -> None:
        bus = self.signing_bus(keys)
        rec = Recorder(bus, "alice", "bob")
        async with bus:
            unsigned = inform(reply_with="q1")
            headers, body = wire.encode(unsigned, bus.codecs)
            await publish_raw(bus, "bob", headers, body)
            (letter,) = await self.refused(bus)
            # the consumer keeps running: the next, signed message is handled
            await bus.send(inform(payload="after"))
            await eventually(lambda: rec.got["bob"], timeout=WAIT, what="the next message")
            await asyncio.sleep(0.2)  # room for a not-understood to alice, were one sent
        assert letter.reason == "bad-signature"
        assert letter.origin == "bob"
        assert letter.message_id == unsigned.message_id
        assert letter.error_type == "SignatureRefused"
        assert "unsigned: no aclbus-signature header" in (letter.error or "")
        assert [d.message.payload for d in rec.got["bob"]] == ["after"]
        assert rec.got["alice"] == []  # no not-understood, no reply to an unverified sender

    async def test_a_forged_sender_is_refused(self, keys: Keys) -> None:
        """Mallory holds a key the receiver trusts, for mallory: it does not make her alice."""
        bus = self.signing_bus(keys)
        rec = Recorder(bus, "alice", "bob")
        async with bus:
            forged = inform(sender="alice", payload="pay mallory")
            await publish_raw(bus, "bob", *sign(bus, forged, keys.mallory))
            (letter,) = await self.refused(bus)
        assert rec.got["bob"] == []
        assert rec.got["alice"] == []
        assert f"key {keys.mallory.key_id} is not one of the keys of 'alice' (ce-source)" in (
            letter.error or ""
        )

    async def test_an_altered_header_or_body_is_refused(self, keys: Keys) -> None:
        bus = self.signing_bus(keys)
        rec = Recorder(bus, "bob")
        async with bus:
            headers, body = sign(bus, inform(payload={"amount": 10}), keys.alice)
            await publish_raw(bus, "bob", headers, body.replace(b"10", b"99"))
            second = inform(payload="x")
            headers, body = sign(bus, second, keys.alice)
            headers["acl-priority"] = "9"  # a header added on the way
            await publish_raw(bus, "bob", headers, body)
            letters = await self.refused(bus, 2)
        assert rec.got["bob"] == []
        for letter in letters:
            assert "the signature does not match the message" in (letter.error or "")

    async def test_a_replay_is_refused_but_a_redelivery_is_handled(self, keys: Keys) -> None:
        bus = self.signing_bus(keys)
        attempts: list[int] = []

        @bus.agent("bob").on()
        async def handle(msg: ACLMessage, delivery: Delivery) -> None:
            attempts.append(delivery.attempt)
            if delivery.attempt == 1:
                await delivery.nack(delay=0.05)  # handled on the second delivery

        async with bus:
            headers, body = sign(bus, inform(), keys.alice)
            await publish_raw(bus, "bob", headers, body)
            for _ in range(100):
                if len(attempts) >= 2:
                    break
                await self.advance(0.05)
                await asyncio.sleep(0.01)
            assert attempts == [1, 2]  # the redelivery is the same stored message: verified
            await publish_raw(bus, "bob", headers, body)  # the same bytes, published again
            (letter,) = await self.refused(bus)
        assert attempts == [1, 2]
        assert "replay: message" in (letter.error or "")
        assert aclbus_signing.stats(bus).verified == 2

    async def test_a_message_outside_the_timestamp_window_is_refused(self, keys: Keys) -> None:
        bus = self.signing_bus(keys, max_age=60.0, max_skew=5.0)
        rec = Recorder(bus, "bob")
        now = datetime.now(UTC)
        async with bus:
            old = inform(timestamp=now - timedelta(seconds=120))
            ahead = inform(timestamp=now + timedelta(seconds=60))
            fresh = inform(timestamp=now - timedelta(seconds=30))
            for msg in (old, ahead, fresh):
                await publish_raw(bus, "bob", *sign(bus, msg, keys.alice))
            letters = await self.refused(bus, 2)
            await eventually(lambda: rec.got["bob"], timeout=WAIT, what="the fresh one")
        errors = {letter.message_id: letter.error or "" for letter in letters}
        assert "too old" in errors[old.message_id]
        assert "max_age 60 s" in errors[old.message_id]
        assert "from the future" in errors[ahead.message_id]
        assert rec.ids("bob") == [fresh.message_id]

    async def test_a_message_signed_for_another_receiver_is_refused(self, keys: Keys) -> None:
        bus = self.signing_bus(keys)
        rec = Recorder(bus, "bob")
        async with bus:
            for_carol = inform(receiver="carol")
            await publish_raw(bus, "bob", *sign(bus, for_carol, keys.alice))
            (letter,) = await self.refused(bus)
        assert rec.got["bob"] == []
        assert "misdirected: signed for carol, delivered to 'bob'" in (letter.error or "")

    async def test_two_keys_are_valid_during_a_rotation(self, keys: Keys, tmp_path: Path) -> None:
        rotating = tmp_path / "rotating.toml"
        rotating.write_text(
            tomli_w.dumps(
                {"alice": [keys.alice.key_id, keys.alice_next.key_id], "bob": [keys.bob.key_id]}
            )
        )
        bus = self.signing_bus(keys, keys_file=str(rotating))
        rec = Recorder(bus, "bob")
        async with bus:
            by_old, by_new, by_other = inform(), inform(), inform()
            await publish_raw(bus, "bob", *sign(bus, by_old, keys.alice))
            await publish_raw(bus, "bob", *sign(bus, by_new, keys.alice_next))
            await publish_raw(bus, "bob", *sign(bus, by_other, keys.bob))
            (letter,) = await self.refused(bus)
            await eventually(lambda: len(rec.got["bob"]) == 2, timeout=WAIT, what="both keys")
        assert sorted(rec.ids("bob")) == sorted([by_old.message_id, by_new.message_id])
        assert letter.message_id == by_other.message_id

    async def test_keys_published_in_the_directory_are_trusted(self, keys: Keys) -> None:
        bus = self.signing_bus(keys, keys_file=None, directory=True)
        rec = Recorder(bus, "bob")
        async with bus:
            await bus.directory.register(
                with_signing_keys(AgentDescription(agent_id="alice"), keys.alice.key_id),
                heartbeat=None,
            )
            first = inform()
            await bus.send(first)
            await eventually(lambda: rec.got["bob"], timeout=WAIT, what="alice's message")
            forged = inform()
            await publish_raw(bus, "bob", *sign(bus, forged, keys.mallory))
            (letter,) = await self.refused(bus)
            # a rotation: alice publishes her next key beside the old one; it is read again
            await bus.directory.register(
                with_signing_keys(
                    AgentDescription(agent_id="alice"), keys.alice.key_id, keys.alice_next.key_id
                ),
                heartbeat=None,
            )
            await asyncio.sleep(1.1)  # a key id not in the entry read makes it be read again
            rotated = inform()
            await publish_raw(bus, "bob", *sign(bus, rotated, keys.alice_next))
            await eventually(lambda: len(rec.got["bob"]) == 2, timeout=WAIT, what="next key")
        assert rec.ids("bob") == [first.message_id, rotated.message_id]
        assert letter.message_id == forged.message_id

    async def test_a_directory_out_of_reach_defers_the_message(self, keys: Keys) -> None:
        """Keys that cannot be read are no verdict: the message comes back, then is handled."""
        bus = self.signing_bus(keys, keys_file=None, directory=True)
        rec = Recorder(bus, "bob")
        calls: list[str] = []

        class Flaky:
            def __init__(self, directory: Any) -> None:
                self.directory = directory

            async def get(self, agent_id: str) -> AgentDescription | None:
                calls.append(agent_id)
                if len(calls) == 1:
                    raise ConnectionError("KV out of reach")
                result: AgentDescription | None = await self.directory.get(agent_id)
                return result

        async with bus:
            (signing,) = [m for m in bus.middlewares if isinstance(m, Signing)]
            signing.verifier.ring.directory = Flaky(bus.directory)
            await bus.directory.register(
                with_signing_keys(AgentDescription(agent_id="alice"), keys.alice.key_id)
            )
            msg = inform()
            await bus.send(msg)
            for _ in range(100):
                if rec.got["bob"]:
                    break
                await self.advance(0.1)
                await asyncio.sleep(0.01)
            letters = await bus.dead_letters.list()
            stats = aclbus_signing.stats(bus)
        assert rec.ids("bob") == [msg.message_id]
        assert rec.got["bob"][0].attempt == 2
        assert letters == []
        assert (stats.deferred, stats.refused, stats.verified) == (1, 0, 1)

    async def test_a_signed_request_is_verified_and_answered(self, keys: Keys) -> None:
        bus = self.signing_bus(keys)

        @bus.agent("bob").on(Performative.REQUEST)
        async def serve(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload={"echo": msg.payload})

        async with bus:
            request = ACLMessage(
                performative=Performative.REQUEST,
                sender_id="alice",
                receiver_id="bob",
                payload="ping",
            )
            reply = await bus.request(request, timeout=WAIT)
            stats = aclbus_signing.stats(bus)
        assert reply.payload == {"echo": "ping"}
        assert reply.sender_id == "bob"
        assert stats.verified == 1
        assert stats.signed == 2  # the request, and bob's reply

    async def test_a_forwarded_message_is_signed_again_by_its_forwarder(self, keys: Keys) -> None:
        """The signature it came with is dropped: bob's forward is bob's; dave's is unsigned."""
        bus = self.signing_bus(keys)
        rec = Recorder(bus, "carol")

        @bus.agent("bob").on()
        async def forward(msg: ACLMessage) -> None:
            assert SIGNATURE_HEADER in msg.headers  # kept as an application header
            for sender in ("bob", "dave"):  # dave has no key
                await bus.send(
                    msg.model_copy(
                        update={
                            "sender_id": sender,
                            "receiver_id": "carol",
                            "message_id": f"fwd-{sender}",
                        }
                    )
                )

        async with bus:
            await bus.send(inform())
            (letter,) = await self.refused(bus)
            await eventually(lambda: rec.got["carol"], timeout=WAIT, what="bob's forward")
        (delivery,) = rec.got["carol"]
        assert delivery.message.message_id == "fwd-bob"
        assert {k.lower(): v for k, v in delivery.headers.items()}[KEY_HEADER] == keys.bob.key_id
        assert letter.message_id == "fwd-dave"
        assert "unsigned" in (letter.error or "")

    async def test_warn_mode_logs_a_bad_signature_and_handles_the_message(
        self, keys: Keys, caplog: pytest.LogCaptureFixture
    ) -> None:
        bus = self.signing_bus(keys, mode="warn")
        rec = Recorder(bus, "bob")
        with caplog.at_level(logging.WARNING, logger="aclbus.signing"):
            async with bus:
                unsigned = inform()
                await publish_raw(bus, "bob", *wire.encode(unsigned, bus.codecs))
                await eventually(lambda: rec.got["bob"], timeout=WAIT, what="handled anyway")
                letters = await bus.dead_letters.list()
                stats = aclbus_signing.stats(bus)
        assert rec.ids("bob") == [unsigned.message_id]
        assert letters == []
        assert (stats.warned, stats.refused) == (1, 0)
        (record,) = [r for r in caplog.records if "bad signature" in r.getMessage()]
        assert unsigned.message_id in record.getMessage()
        assert "handled anyway (mode warn)" in record.getMessage()

    async def test_no_secret_reaches_a_log_line_or_a_dead_letter(
        self, keys: Keys, caplog: pytest.LogCaptureFixture
    ) -> None:
        bus = self.signing_bus(keys)
        Recorder(bus, "bob")
        with caplog.at_level(logging.DEBUG):
            async with bus:
                await bus.send(inform())
                await publish_raw(bus, "bob", *sign(bus, inform(sender="alice"), keys.mallory))
                letters = await self.refused(bus)
                shown = repr(bus.middlewares) + repr(aclbus_signing.stats(bus))
        seen = caplog.text + shown + "".join(repr(letter.as_dict()) for letter in letters)
        for seed in keys.seeds():
            assert seed not in seen
        assert keys.mallory.key_id in seen  # the public key id is what the record names


class TestOnMemory(MemoryConfig, SigningCases):
    """The cases on the memory engine."""


class TestOnNats(NatsConfig, SigningCases):
    """The cases on a real nats-server (the session's embedded one, on loopback)."""


# -- settings, keys and the cost of doing nothing -----------------------------------------


class TestSettings(MemoryConfig):
    async def test_mode_off_adds_no_middleware_and_no_header(self, keys: Keys) -> None:
        configure(keys, mode="off")
        bus = self.make_bus(plugins=[aclbus_signing])
        rec = Recorder(bus, "bob")
        async with bus:
            await bus.send(inform())
            await eventually(lambda: rec.got["bob"], timeout=WAIT, what="bob handles it")
            assert not [m for m in bus.middlewares if isinstance(m, Signing)]
            with pytest.raises(ConfigurationError, match="not active"):
                aclbus_signing.stats(bus)
        headers = {k.lower() for k in rec.got["bob"][0].headers}
        assert SIGNATURE_HEADER not in headers
        assert KEY_HEADER not in headers

    async def test_require_without_a_source_of_public_keys_fails_at_start(self, keys: Keys) -> None:
        configure(keys, keys_file=None)
        bus = self.make_bus(plugins=[aclbus_signing])
        with pytest.raises(ConfigurationError, match="ACLBUS_SIGNING__KEYS_FILE"):
            async with bus:
                pass

    async def test_an_unreadable_key_file_is_named_without_its_content(
        self, keys: Keys, tmp_path: Path
    ) -> None:
        bad = tmp_path / "bad.seed"
        secret = keys.alice.seed_text()[:-3] + "!!!"  # almost a seed: never to be echoed
        bad.write_text(secret)
        bad.chmod(0o600)
        configure(keys, key_file=str(bad))
        bus = self.make_bus(plugins=[aclbus_signing])
        with pytest.raises(InvalidKey) as caught:
            async with bus:
                pass
        assert str(bad) in str(caught.value)
        assert secret not in str(caught.value)
        assert secret[:20] not in repr(caught.value)

    async def test_a_bad_pinned_key_names_the_file_and_the_agent(
        self, keys: Keys, tmp_path: Path
    ) -> None:
        pinned = tmp_path / "bad-keys.toml"
        pinned.write_text('alice = ["not-a-key"]\n')
        configure(keys, keys_file=str(pinned))
        bus = self.make_bus(plugins=[aclbus_signing])
        with pytest.raises(InvalidKey, match=r"bad-keys.toml: alice: 'not-a-key' is not a key id"):
            async with bus:
                pass

    def test_a_key_file_others_can_read_gets_a_warning(
        self, keys: Keys, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = keys.files["alice"]
        path.chmod(0o644)
        with caplog.at_level(logging.WARNING, logger="aclbus.signing"):
            key = aclbus_signing.read_private_key(path)
        assert key.key_id == keys.alice.key_id
        assert f"signing key file {path} can be read by others (mode 644)" in caplog.text
        assert keys.alice.seed_text() not in caplog.text + repr(key)

    def test_a_pem_key_and_a_u_nkey_name_the_same_key(self, tmp_path: Path) -> None:
        import nkeys
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        raw = Ed25519PrivateKey.generate()
        pem = tmp_path / "k.pem"
        pem.write_bytes(
            raw.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pem.chmod(0o600)
        key = aclbus_signing.read_private_key(pem)
        seed = raw.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        pair = nkeys.from_seed(nkeys.encode_seed(seed, nkeys.PREFIX_BYTE_USER))
        assert aclbus_signing.decode_key_id(pair.public_key.decode()) == key.key_id
        nkey_file = tmp_path / "k.seed"
        nkey_file.write_bytes(pair.seed)
        nkey_file.chmod(0o600)
        assert aclbus_signing.read_private_key(nkey_file).key_id == key.key_id
        # an account seed (SA…) is an NKey, but not a user's
        account = tmp_path / "a.seed"
        account.write_bytes(nkeys.encode_seed(seed, nkeys.PREFIX_BYTE_ACCOUNT))
        with pytest.raises(InvalidKey, match="not a user's"):
            aclbus_signing.read_private_key(account)

    def test_a_base64url_seed_starting_with_s_is_no_nkey(self, tmp_path: Path) -> None:
        """One seed in 64 starts with 'S' in base64url: it is told from an NKey by its length."""
        key = next(
            k for k in (PrivateKey.generate() for _ in range(10_000)) if k.seed_text()[0] == "S"
        )
        path = tmp_path / "s.seed"
        path.write_text(key.seed_text())
        path.chmod(0o600)
        assert aclbus_signing.read_private_key(path).key_id == key.key_id

    def test_the_command_line_makes_a_key_and_names_its_key_id(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from aclbus_signing.__main__ import main

        path = tmp_path / "new.seed"
        assert main(["new-key", str(path)]) == 0
        made = capsys.readouterr().out.strip()
        assert path.stat().st_mode & 0o777 == 0o600
        assert aclbus_signing.read_private_key(path).key_id == made
        assert main(["key-id", str(path)]) == 0
        assert capsys.readouterr().out.strip() == made
        assert main(["new-key", str(path)]) == 1  # never overwrites a key
        assert aclbus_signing.read_private_key(path).key_id == made
