"""The token table and the tokens file: whose a token is, and mistakes named without it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from aclbus import ConfigurationError, Settings
from aclbus_gateway import GatewaySettings, create_app
from aclbus_gateway.tokens import TokenTable, read_tokens_file

SECRET = "s3cret-value-that-must-not-show"


def test_a_token_names_its_agent_and_nothing_else() -> None:
    table = TokenTable({"alice": SecretStr("t-alice"), "bob": SecretStr("t-bob")})
    assert table.agent_for("t-alice") == "alice"
    assert table.agent_for("t-bob") == "bob"
    assert table.agent_for("t-alic") is None
    assert table.agent_for("") is None
    assert table.agent_for("t-alice\u00e9") is None
    assert table.agents == {"alice", "bob"}
    assert "t-alice" not in repr(table)


@pytest.mark.parametrize(
    ("tokens", "says"),
    [
        ({"alice": SECRET, "bob": SECRET}, "'alice' and 'bob' have the same token"),
        ({"al ice": SECRET}, "agent"),
        ({"alice": ""}, "the token of 'alice' is empty"),
    ],
)
def test_unusable_tokens_are_refused_without_showing_them(
    tokens: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says) as caught:
        TokenTable({agent: SecretStr(token) for agent, token in tokens.items()})
    assert SECRET not in str(caught.value)


def test_tokens_files_in_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "tokens.toml"
    toml.write_text(f'alice = "{SECRET}"\n', encoding="utf-8")
    json = tmp_path / "tokens.json"
    json.write_text(f'{{"bob": "{SECRET}x"}}', encoding="utf-8")
    assert read_tokens_file(toml)["alice"].get_secret_value() == SECRET
    assert read_tokens_file(json)["bob"].get_secret_value() == SECRET + "x"


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("bad.toml", f'alice = "{SECRET}\n', "is not valid TOML"),
        ("bad.json", f'{{"alice": "{SECRET}"', "is not valid JSON"),
        ("nested.toml", f'[alice]\ntoken = "{SECRET}"\n', "must map agent ids to token strings"),
    ],
)
def test_a_bad_tokens_file_is_named_without_its_contents(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=says) as caught:
        read_tokens_file(path)
    assert SECRET not in str(caught.value)
    assert name in str(caught.value)


def test_a_missing_tokens_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        read_tokens_file(tmp_path / "absent.toml")


def test_create_app_reads_the_tokens_now(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(f'alice = "{SECRET}"\n', encoding="utf-8")
    both = GatewaySettings(tokens={"alice": SecretStr("other")}, tokens_file=path)
    with pytest.raises(ConfigurationError, match="in both") as caught:
        create_app(Settings(backend="memory"), gateway=both)
    assert SECRET not in str(caught.value)


def test_gateway_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_GATEWAY__PORT", "0")
    monkeypatch.setenv("ACLBUS_GATEWAY__TOKENS", f'{{"alice": "{SECRET}"}}')
    monkeypatch.setenv("ACLBUS_GATEWAY__MAX_REQUEST_TIMEOUT", "9")
    settings = GatewaySettings()
    assert settings.port == 0
    assert settings.max_request_timeout == 9
    assert settings.tokens["alice"].get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    monkeypatch.setenv("ACLBUS_GATEWAY__PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        GatewaySettings()


def test_serve_refuses_a_bad_tokens_file_without_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from aclbus.cli import main

    path = tmp_path / "tokens.toml"
    path.write_text(f'alice = "{SECRET}"\nbob = "{SECRET}"\n', encoding="utf-8")
    monkeypatch.setenv("ACLBUS_BACKEND", "memory")
    monkeypatch.setenv("ACLBUS_GATEWAY__TOKENS_FILE", str(path))
    result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 1
    assert "'alice' and 'bob' have the same token" in result.output
    assert "listening" not in result.output
    assert SECRET not in result.output
