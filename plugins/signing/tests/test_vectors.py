"""The test vectors of docs/wire-format.md section 14, checked in Python and in Node.js.

The vectors are read out of the page itself, so the page cannot drift from the code. Node.js
runs the page's own JavaScript block (``node:crypto`` only, no package), with a few lines of
the test's that feed it: it must verify the documented vector, and sign a message that the
Python receiver then accepts, and whose tampered copy it refuses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import nkeys
import pytest

import aclbus_signing
from aclbus import ACLMessage, Performative, wire
from aclbus.backend import DeliveryMode
from aclbus.testing import MemoryConfig, eventually
from aclbus_nats.testing import NatsConfig
from aclbus_signing import PrivateKey, canonical, signing_input
from aclbus_signing.keys import b64url, decode_key_id, public_key, read_private_key, verify

DOC = Path(__file__).parents[3] / "docs" / "wire-format.md"


def block(name: str) -> str:
    """The fenced block after ``<!-- signing-vector: name -->``, its text without the fences."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- signing-vector: {re.escape(name)} -->\n```\w*\n(.*?)```", text, re.S)
    assert match is not None, f"docs/wire-format.md has no signing-vector {name!r}"
    return match.group(1)


def key_block() -> dict[str, str]:
    return dict(line.split(": ", 1) for line in block("key").splitlines())


def message_block() -> tuple[list[tuple[str, str]], bytes]:
    head, body = block("message").split("\n\n", 1)
    headers = [(n, v) for n, v in (line.split(": ", 1) for line in head.splitlines())]
    return headers, body.removesuffix("\n").encode()


def test_the_documented_key_is_the_seed_the_page_names() -> None:
    key = key_block()
    seed = hashlib.sha256(b"aclbus signing test vector 1").digest()
    assert key["seed-base64url"] == b64url(seed)
    assert PrivateKey.from_seed(seed).key_id == key["key-id"]
    # the NKey forms name the same key, as the nkeys library reads them
    pair = nkeys.from_seed(key["seed-nkey"].encode())
    assert pair.public_key.decode() == key["public-nkey"]
    assert decode_key_id(key["public-nkey"]) == key["key-id"]


def test_an_nkey_seed_file_signs_with_the_documented_key(tmp_path: Path) -> None:
    path = tmp_path / "alice.seed"
    path.write_text(key_block()["seed-nkey"] + "\n")
    path.chmod(0o600)
    assert read_private_key(path).key_id == key_block()["key-id"]


def test_the_documented_canonical_form_and_signature() -> None:
    headers, body = message_block()
    form = canonical(dict(headers), body)
    assert form == block("canonical").removesuffix("\n").encode()
    assert len(form) == 443  # as the page says
    assert signing_input(form).startswith(b"DSSEv1 34 application/vnd.aclbus.envelope.v1 443 ")
    seed = base64.urlsafe_b64decode(key_block()["seed-base64url"] + "=")
    signature = PrivateKey.from_seed(seed).sign(signing_input(form))
    assert b64url(signature) == block("signature").strip()
    sent = dict(headers)
    assert sent["aclbus-signature"] == block("signature").strip()
    assert verify(public_key(key_block()["key-id"]), signature, signing_input(form))
    # one byte of the body changed, and it no longer verifies
    altered = canonical(dict(headers), body.replace(b"monde", b"Monde"))
    assert not verify(public_key(key_block()["key-id"]), signature, signing_input(altered))


_DRIVER = """
import { readFileSync } from "node:fs";
const input = JSON.parse(readFileSync(0, "utf8"));
const v = input.vector;
const vBody = Buffer.from(v.body, "utf8");
const out = {
  canonical: canonical(v.headers, vBody).toString("utf8"),
  verified: verify(null, pae(canonical(v.headers, vBody)), publicKey(v.keyId),
                   Buffer.from(v.signature, "base64url")),
  tamperedVerified: verify(null, pae(canonical(v.headers, Buffer.from(v.body + " ", "utf8"))),
                           publicKey(v.keyId), Buffer.from(v.signature, "base64url")),
};
const s = input.sign;
const sBody = Buffer.from(s.body, "base64");
out.signature = sign(null, pae(canonical(s.headers, sBody)), privateKey(s.seed, s.keyId))
  .toString("base64url");
process.stdout.write(JSON.stringify(out));
"""


def run_node(tmp_path: Path, payload: dict[str, object]) -> dict[str, object]:
    node = shutil.which("node")
    # Not a skip: the doc's claim that another language can verify is what this proves.
    assert node is not None, "Node.js (node >= 20 on PATH) is needed to check the doc's JS"
    script = tmp_path / "aclbus_signing.mjs"
    script.write_text(block("node") + _DRIVER, encoding="utf-8")
    done = subprocess.run(
        [node, str(script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


class NodeInteropCases:
    """Node.js signs, aclbus verifies (mixed with a backend config)."""

    make_bus: Any

    async def test_node_verifies_the_vector_and_signs_what_aclbus_accepts(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        key = key_block()
        headers, body = message_block()
        # The message Node signs: what an aclbus sender would encode, from "alice" to "bob".
        msg = ACLMessage(
            performative=Performative.INFORM,
            sender_id="alice",
            receiver_id="bob",
            payload={"from": "node", "text": "héllo"},
        )
        pinned = tmp_path / "keys.toml"
        pinned.write_text(f'alice = ["{key["public-nkey"]}"]\n')
        monkeypatch.setenv("ACLBUS_SIGNING__MODE", "require")
        monkeypatch.setenv("ACLBUS_SIGNING__KEYS_FILE", str(pinned))
        bus = self.make_bus(plugins=[aclbus_signing])
        to_sign, to_sign_body = wire.encode(msg, bus.codecs)
        result = run_node(
            tmp_path,
            {
                "vector": {
                    "headers": headers,
                    "body": body.decode(),
                    "keyId": key["key-id"],
                    "signature": block("signature").strip(),
                },
                "sign": {
                    "headers": list(to_sign.items()),
                    "body": base64.b64encode(to_sign_body).decode(),
                    "seed": key["seed-base64url"],
                    "keyId": key["key-id"],
                },
            },
        )
        assert result["canonical"] == block("canonical").removesuffix("\n")
        assert result["verified"] is True
        assert result["tamperedVerified"] is False

        # The Python receiver takes what Node signed, and refuses a tampered copy.
        got: list[ACLMessage] = []

        @bus.agent("bob").on(Performative.INFORM)
        async def handle(m: ACLMessage) -> None:
            got.append(m)

        signed = {
            **to_sign,
            "aclbus-signature-key": key["key-id"],
            "aclbus-signature": str(result["signature"]),
        }
        tampered_msg = msg.model_copy(update={"message_id": "tampered-1"})
        tampered, tampered_body = wire.encode(tampered_msg, bus.codecs)
        tampered.update({k: v for k, v in signed.items() if k.startswith("aclbus-")})
        async with bus:
            inbox = bus.subjects.inbox("bob")
            mode = DeliveryMode.AT_LEAST_ONCE
            await bus.backend.publish(inbox, tampered, tampered_body, mode=mode, msg_id="t1")
            await bus.backend.publish(inbox, signed, to_sign_body, mode=mode, msg_id="s1")
            await eventually(lambda: len(got) == 1, what="the message Node signed, handled")
            await eventually(
                lambda: aclbus_signing.stats(bus).refused == 1, what="the tampered copy refused"
            )
            (letter,) = await bus.dead_letters.list()
        assert [m.message_id for m in got] == [msg.message_id]
        assert got[0].payload == {"from": "node", "text": "héllo"}
        assert letter.reason == "bad-signature"
        assert letter.message_id == "tampered-1"
        assert "does not match" in (letter.error or "")


class TestNodeInteropOnMemory(MemoryConfig, NodeInteropCases):
    """On the memory engine."""


class TestNodeInteropOnNats(NatsConfig, NodeInteropCases):
    """On a real nats-server: the headers Node signed, as nats-py hands them over."""


def test_headers_with_no_canonical_form_are_refused() -> None:
    from aclbus_signing import CanonicalFormError

    with pytest.raises(CanonicalFormError, match="'x-a' holds a line break"):
        canonical({"ce-id": "1", "x-a": "one\nce-source:bob"}, b"")
    with pytest.raises(CanonicalFormError, match="'x-a' holds a line break"):
        canonical({"x-a": "one\rtwo"}, b"")
    with pytest.raises(CanonicalFormError, match="'ce-source' is given twice"):
        canonical({"ce-source": "alice", "Ce-Source": "bob"}, b"")
    # the transport's own headers, and the signature's, are not in the form
    assert canonical({"Nats-Msg-Id": "x", "aclbus-dlq-reason": "y", "A": " b\t"}, b"") == (
        b"a:b\n\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
