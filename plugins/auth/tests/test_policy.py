"""The policy file: what it accepts, how it refuses, what it renders to, and its CLI."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aclbus.acl import ACLMessage
from aclbus.backends.memory import MemoryBackend
from aclbus.bus import Bus
from aclbus.cli import main
from aclbus.errors import PermissionDenied
from aclbus.permissions import Permissions
from aclbus.settings import Settings
from aclbus_auth.policy import (
    PolicyError,
    PolicyPlugin,
    jwt_permissions,
    load_policy,
    parse_policy,
    permissions_for,
    render_json,
    render_nats_conf,
)
from aclbus_auth.settings import AuthSettings
from aclbus_nats.server.binary import check_config

NKEY = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"

EXAMPLE = """
prefix = "acme"

[responses]
max = 2
expires = "30s"

[users.deployer]
password = "$DEPLOYER_PASSWORD"
admin = true

[users.planner]
password = "$PLANNER_PASSWORD"
agents = ["planner"]

[users.crawler]
nkey = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
agents = ["crawler"]

[users.auditor]
certificate = "CN=auditor,O=Acme"
agents = ["auditor"]

[agents.planner]
send = ["*"]
groups = ["crawlers"]
publish = ["jobs.>"]
request = ["crawler"]
broadcast = true

[agents.crawler]
send = ["planner"]
join = ["crawlers"]
subscribe = ["jobs.*"]

[agents.auditor]
dlq = "manage"
"""


def policy_data(**changes: Any) -> dict[str, Any]:
    data = tomllib.loads(EXAMPLE)
    data.update(changes)
    return data


def refusal(data: dict[str, Any]) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_policy(data, "policy.toml")
    return caught.value


# -- loading -------------------------------------------------------------------------------


def test_the_example_loads_with_every_way_to_authenticate() -> None:
    policy = parse_policy(tomllib.loads(EXAMPLE))
    assert {name: user.method for name, user in policy.users.items()} == {
        "deployer": "password",
        "planner": "password",
        "crawler": "nkey",
        "auditor": "certificate",
    }
    assert policy.responses.seconds == 30.0


@pytest.mark.parametrize(
    ("change", "place", "words"),
    [
        (
            lambda d: d["users"]["planner"].update(agents=["ghost"]),
            "users.planner.agents[0]",
            "unknown agent 'ghost'",
        ),
        (
            lambda d: d["agents"]["planner"].update(send=["crawler", "nobody"]),
            "agents.planner.send[1]",
            "unknown agent 'nobody'",
        ),
        (
            lambda d: d["agents"]["planner"].update(request=["x.y"]),
            "agents.planner.request[0]",
            "subject separator",
        ),
        (
            lambda d: d["agents"]["planner"].update(send=["crawl*"]),
            "agents.planner.send[0]",
            "wildcard",
        ),
        (
            lambda d: d["users"].update(second={"password": "$X", "agents": ["planner"]}),
            "users.second.agents[0]",
            "already acted as by user 'planner'",
        ),
        (
            lambda d: d["users"].update(twin={"nkey": NKEY, "agents": []}),
            "users.twin",
            "acts as no agent",
        ),
        (
            lambda d: d["users"]["crawler"].update(password="$CRAWLER"),
            "users.crawler",
            "exactly one of password, nkey or certificate",
        ),
        (
            lambda d: d["users"]["planner"].update(password="hunter2"),
            "users.planner.password",
            "environment variable",
        ),
        (
            lambda d: d["users"]["crawler"].update(nkey="SUABC"),
            "users.crawler.nkey",
            "public NKey",
        ),
        (
            lambda d: d["agents"]["crawler"].update(subscribe=["jobs.>.x"]),
            "agents.crawler.subscribe[0]",
            "'>' is only allowed as the last token",
        ),
        (
            lambda d: d["agents"]["crawler"].update(dlq="write"),
            "agents.crawler.dlq",
            "'none', 'read' or 'manage'",
        ),
        (lambda d: d["agents"]["crawler"].update(sned=["x"]), "agents.crawler.sned", "unknown"),
        (lambda d: d["responses"].update(expires="soon"), "responses", "duration"),
    ],
)
def test_a_bad_policy_names_the_place_and_the_problem(change: Any, place: str, words: str) -> None:
    data = policy_data()
    change(data)
    error = refusal(data)
    assert error.place == place, error
    assert words in error.problem, error
    assert str(error).startswith(f"policy policy.toml: {place}: ")


def test_two_users_with_one_nkey_are_refused() -> None:
    data = policy_data()
    data["agents"]["spare"] = {}
    data["users"]["spare"] = {"nkey": NKEY, "agents": ["spare"]}
    error = refusal(data)
    assert error.place == "users.spare.nkey"
    assert "'crawler'" in error.problem


def test_a_missing_or_broken_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[users\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(broken)


# -- what it renders to --------------------------------------------------------------------


def test_an_agents_permissions_keep_to_its_own_consumers_and_refuse_the_shared_streams() -> None:
    crawler = permissions_for(parse_policy(tomllib.loads(EXAMPLE)), "crawler")
    publish = crawler.publish
    # its own inbox consumer, on its own filter, may be made; not one on another filter
    assert publish.permits(
        "$JS.API.CONSUMER.CREATE.ACME_AGENT.acme-agent-crawler.acme.agent.crawler"
    )
    assert not publish.permits(
        "$JS.API.CONSUMER.CREATE.ACME_AGENT.acme-agent-crawler.acme.agent.planner"
    )
    assert not publish.permits("$JS.API.CONSUMER.DURABLE.CREATE.ACME_AGENT.acme-agent-crawler")
    # the shared streams: no reads by sequence, no delete, no purge
    for subject in (
        "$JS.API.STREAM.MSG.GET.ACME_AGENT",
        "$JS.API.DIRECT.GET.ACME_AGENT",
        "$JS.API.STREAM.DELETE.ACME_AGENT",
        "$JS.API.STREAM.PURGE.ACME_AGENT",
        "$JS.API.STREAM.MSG.GET.ACME_DLQ",
    ):
        assert not publish.permits(subject), subject
    # joined group, subscribed topic, granted sends; nothing else
    assert publish.permits(
        "$JS.API.CONSUMER.CREATE.ACME_GROUP.acme-group-crawlers-crawler.acme.group.crawlers"
    )
    assert publish.permits("acme.agent.planner")
    assert publish.permits("acme.agent.planner.high")
    assert not publish.permits("acme.agent.auditor")
    assert not publish.permits("acme.broadcast")
    assert not publish.permits("_INBOX.x.1")  # replies go through allow_responses
    assert crawler.responses is not None
    assert crawler.responses.max == 2
    assert crawler.subscribe.permits_filter("acme.topic.jobs.*")
    assert not crawler.subscribe.permits_filter("acme.topic.jobs.>")
    assert not crawler.subscribe.permits_filter("_INBOX.>")
    assert not crawler.subscribe.permits_filter("_INBOX.aclbus.ACME_AGENT.acme-agent-planner")


def test_the_dlq_grants() -> None:
    policy = parse_policy(tomllib.loads(EXAMPLE))
    auditor = permissions_for(policy, "auditor").publish
    assert auditor.permits("$JS.API.STREAM.MSG.GET.ACME_DLQ")
    assert auditor.permits("$JS.API.STREAM.PURGE.ACME_DLQ")
    assert not auditor.permits("$JS.API.STREAM.PURGE.ACME_AGENT")
    admin = permissions_for(policy, "deployer")
    assert admin.publish.permits("$JS.API.STREAM.DELETE.ACME_AGENT")
    assert admin.responses is None


def test_the_rendered_block_passes_nats_server_t(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = parse_policy(tomllib.loads(EXAMPLE))
    (tmp_path / "authorization.conf").write_text(render_nats_conf(policy))
    server = tmp_path / "server.conf"
    server.write_text(
        f'port: -1\njetstream: {{store_dir: "{tmp_path / "js"}"}}\ninclude "authorization.conf"\n'
    )
    monkeypatch.setenv("DEPLOYER_PASSWORD", "d")
    monkeypatch.setenv("PLANNER_PASSWORD", "p")
    verdict = check_config(server)
    assert verdict.valid, verdict.message
    # the passwords are references the server resolves: without them it refuses the file
    monkeypatch.delenv("PLANNER_PASSWORD")
    verdict = check_config(server)
    assert not verdict.valid
    assert "PLANNER_PASSWORD" in verdict.message


def test_the_json_render_is_the_same_block() -> None:
    policy = parse_policy(tomllib.loads(EXAMPLE))
    users = json.loads(render_json(policy))["authorization"]["users"]
    by_identity = {u.get("user") or u["nkey"]: u for u in users}
    assert set(by_identity) == {"deployer", "planner", NKEY, "CN=auditor,O=Acme"}
    assert by_identity["planner"]["password"] == "$PLANNER_PASSWORD"
    planner = by_identity["planner"]["permissions"]
    assert planner["allow_responses"] == {"max": 2, "expires": "30s"}
    assert "acme.rpc.crawler" in planner["publish"]["allow"]
    assert "$JS.API.STREAM.DELETE.>" in planner["publish"]["deny"]


def test_jwt_claims_have_the_shape_nats_reads() -> None:
    policy = parse_policy(tomllib.loads(EXAMPLE))
    claims = jwt_permissions(policy, "crawler")
    assert set(claims) == {"pub", "sub", "resp"}
    assert claims["resp"] == {"max": 2, "ttl": 30 * 1_000_000_000}
    assert claims["pub"]["allow"] == list(permissions_for(policy, "crawler").publish.allow)
    assert "acme.rpc.crawler" in claims["sub"]["allow"]
    assert jwt_permissions(policy, "deployer") == {"pub": {"allow": [">"]}, "sub": {"allow": [">"]}}


# -- the command line ----------------------------------------------------------------------


def test_aclbus_policy_render_prints_the_block(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(EXAMPLE)
    done = CliRunner().invoke(main, ["policy", "render", str(path)])
    assert done.exit_code == 0, done.output
    assert done.output == render_nats_conf(load_policy(path))
    as_json = CliRunner().invoke(main, ["policy", "render", str(path), "--format", "json"])
    assert json.loads(as_json.output) == json.loads(render_json(load_policy(path)))
    claims = CliRunner().invoke(main, ["policy", "claims", str(path), "crawler"])
    assert json.loads(claims.output)["resp"]["max"] == 2


def test_aclbus_policy_render_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(EXAMPLE.replace('send = ["planner"]', 'send = ["ghost"]'))
    done = CliRunner().invoke(main, ["policy", "render", str(path)])
    assert done.exit_code == 1
    assert "agents.crawler.send[0]: unknown agent 'ghost'" in done.output


def test_a_plugin_that_fails_to_load_does_not_break_aclbus_help(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aclbus.plugin import manager

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the plugin exploded")

    monkeypatch.setattr(manager.PluginManager, "commands", broken)
    monkeypatch.setattr(main, "_from_plugins", None)  # forget the commands loaded before
    # the core's own commands do not load the plugins at all
    assert CliRunner().invoke(main, ["dlq", "--help"]).exit_code == 0
    assert main._from_plugins is None
    done = CliRunner().invoke(main, ["--help"])
    assert done.exit_code == 0
    assert "dlq" in done.output
    assert "policy" not in done.output
    assert "warning: plugin commands are unavailable" in done.output
    assert "the plugin exploded" in done.output


# -- the plugin on a bus ---------------------------------------------------------------------


async def test_with_no_policy_the_plugin_adds_nothing() -> None:
    plugin = PolicyPlugin(AuthSettings())
    settings = Settings(backend="memory")
    assert plugin.aclbus_connection_permissions(settings) is None
    assert plugin.aclbus_middlewares(settings) == []
    async with Bus(settings, plugins=[plugin], entry_points=False) as bus:
        assert bus.middlewares == []
        await bus.send(ACLMessage(performative="inform", sender_id="anyone", receiver_id="x"))


def test_a_policy_needs_a_user(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(EXAMPLE)
    with pytest.raises(Exception, match="ACLBUS_AUTH__USER is not set"):
        PolicyPlugin(AuthSettings(policy_file=path)).aclbus_connection_permissions(Settings())
    with pytest.raises(PolicyError, match="no user 'nobody'"):
        PolicyPlugin(AuthSettings(policy_file=path, user="nobody")).aclbus_middlewares(Settings())
    permissions = PolicyPlugin(AuthSettings(policy_file=path, user="planner"))
    assert isinstance(permissions.aclbus_connection_permissions(Settings()), Permissions)


async def test_the_memory_backend_holds_the_bus_to_its_users_permissions(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(EXAMPLE)
    settings = Settings(backend="memory", subject_prefix="acme")
    plugin = PolicyPlugin(AuthSettings(policy_file=path, user="crawler"))
    backend = MemoryBackend()
    async with Bus(settings, backend=backend, plugins=[plugin], entry_points=False) as bus:
        await bus.send(
            ACLMessage(performative="inform", sender_id="crawler", receiver_id="planner")
        )
        with pytest.raises(PermissionDenied) as caught:
            await bus.send(
                ACLMessage(performative="inform", sender_id="crawler", receiver_id="auditor")
            )
        assert str(caught.value) == "permission denied: publish on 'acme.agent.auditor'"


def test_the_example_of_the_security_guide_loads_and_renders_valid_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guide = (Path(__file__).parents[3] / "docs" / "security.md").read_text()
    section = guide[guide.index("## The policy") :]
    start = section.index("```toml\n") + len("```toml\n")
    example = section[start : section.index("\n```", start)]
    policy = parse_policy(tomllib.loads(example), "docs/security.md")
    (tmp_path / "authorization.conf").write_text(render_nats_conf(policy))
    server = tmp_path / "server.conf"
    server.write_text('port: -1\ninclude "authorization.conf"\n')
    for name, user in policy.users.items():
        if user.password is not None:
            monkeypatch.setenv(user.password.removeprefix("$"), f"pw-{name}")
    verdict = check_config(server)
    assert verdict.valid, verdict.message
