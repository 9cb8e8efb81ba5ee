"""aclbus.toml with every adapter and plugin of the workspace installed (SPEC R13).

A table that is missing means defaults; a key or table that nothing reads is an error naming
the file, the table, the key and the closest name; the environment and ``.env`` override the
file, section settings included.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aclbus import Bus, ConfigurationError, Settings
from aclbus_dedup.settings import DedupSettings
from aclbus_nats.settings import NatsSettings
from aclbus_ordering.settings import OrderingSettings
from aclbus_retry.settings import RetrySettings

SECTIONS = [NatsSettings, RetrySettings, DedupSettings, OrderingSettings]


pytestmark = pytest.mark.usefixtures("isolated")


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aclbus.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("section", SECTIONS, ids=lambda c: c.__name__)
def test_a_file_with_top_level_settings_only_gives_each_section_its_defaults(
    tmp_path: Path, section: type
) -> None:
    _toml(tmp_path, 'backend = "memory"\nsubject_prefix = "onlytop"\n')
    assert section() == section.model_construct()  # every field at its default


async def test_a_bus_with_every_plugin_starts_from_a_file_holding_one_table(
    tmp_path: Path,
) -> None:
    _toml(tmp_path, "[retry]\nmax_attempts = 2\n")
    bus = Bus(Settings(backend="memory"))
    loaded = {p.name for p in bus.plugins.info()}
    assert {"nats", "retry", "dedup", "ordering"} <= loaded
    async with bus:  # each plugin reads its settings when the bus starts
        assert bus.started
    assert RetrySettings().max_attempts == 2
    assert DedupSettings() == DedupSettings.model_construct()


def test_environment_beats_dotenv_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toml(
        tmp_path,
        'backend = "memory"\n[retry]\nmax_attempts = 3\ninitial_interval = 4.0\n'
        "multiplier = 5.0\n[nats]\nconnect_timeout = 7.0\n",
    )
    (tmp_path / ".env").write_text(
        "ACLBUS_RETRY__INITIAL_INTERVAL=0.5\nACLBUS_RETRY__MULTIPLIER=1.5\n"
        "ACLBUS_NATS__CONNECT_TIMEOUT=8.0\n"
    )
    monkeypatch.setenv("ACLBUS_RETRY__MULTIPLIER", "3.0")
    retry = RetrySettings()
    assert retry.max_attempts == 3  # from the file only
    assert retry.initial_interval == 0.5  # .env over the file
    assert retry.multiplier == 3.0  # the environment over .env
    assert NatsSettings().connect_timeout == 8.0
    assert Settings().backend == "memory"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('backnd = "memory"\n', "unknown key 'backnd' at the top level (did you mean 'backend'?)"),
        (
            "[streams]\nreplica = 3\n",
            "unknown key 'replica' in [streams] (did you mean 'replicas'?)",
        ),
        ("[retry]\nmax_atempts = 3\n", "unknown key 'max_atempts' in [retry] (did you mean"),
        ("[nats]\nserverz = []\n", "unknown key 'serverz' in [nats] (did you mean 'servers'?)"),
        (
            "[retry.agents.worker]\nmax_attemps = 3\n",
            "unknown key 'max_attemps' in [retry.agents.worker] (did you mean 'max_attempts'?)",
        ),
        ("[retyr]\nmax_attempts = 3\n", "unknown table 'retyr' at the top level"),
        ("[dedupe]\nwindow = 3\n", "(did you mean 'dedup'?)"),
        ("[frobnicate]\nx = 1\n", "neither a core setting nor the table of an installed"),
    ],
)
def test_a_typo_names_the_file_the_table_the_key_and_a_close_match(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _toml(tmp_path, 'backend = "memory"\n' * ("backnd" not in text) + text)
    with pytest.raises(ConfigurationError) as err:
        Bus(Settings(backend="memory"))
    assert str(err.value).startswith(f"{path.name}: ")
    assert expected in str(err.value)


def test_a_section_class_checks_its_own_table_when_made(tmp_path: Path) -> None:
    _toml(tmp_path, "[ordering]\ngap_timout = 3\n")
    with pytest.raises(ConfigurationError, match=r"\[ordering\].*did you mean 'gap_timeout'"):
        OrderingSettings()


def test_a_disabled_plugins_table_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toml(tmp_path, "[ordering]\ngap_timeout = 3.0\n")
    monkeypatch.setenv("ACLBUS_DISABLE_PLUGINS", "ordering")
    bus = Bus(Settings(backend="memory"))
    assert "ordering" not in {p.name for p in bus.plugins.info()}


def test_a_bad_value_in_a_section_is_a_configuration_error_without_the_value(
    tmp_path: Path,
) -> None:
    _toml(
        tmp_path,
        '[nats]\nservers = ["nats://agent:hunter2@127.0.0.1:4222"]\nconnect_timeout = -1\n',
    )
    with pytest.raises(ConfigurationError) as err:
        NatsSettings()
    text = str(err.value)
    assert "connect_timeout (ACLBUS_NATS__CONNECT_TIMEOUT, or [nats] connect_timeout" in text
    assert "hunter2" not in text
    assert "ValidationError" not in repr(err.value)


def test_a_file_that_is_not_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    _toml(tmp_path, 'backend = "memory"\n[retry\n')
    with pytest.raises(ConfigurationError, match=r"aclbus.toml: not valid TOML: .*line 2"):
        Settings()


def test_a_section_that_is_not_a_table(tmp_path: Path) -> None:
    _toml(tmp_path, "retry = 3\n")
    with pytest.raises(ConfigurationError, match="'retry' must be a table"):
        RetrySettings()


def test_each_working_directory_reads_its_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two files alike in size and modification time: the parsed-file cache must not mix them.
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, attempts in ((first, 2), (second, 3)):
        folder.mkdir()
        _toml(folder, f"[retry]\nmax_attempts = {attempts}\n")
        os.utime(folder / "aclbus.toml", ns=(1_700_000_000_000_000_000,) * 2)
    monkeypatch.chdir(first)
    assert RetrySettings().max_attempts == 2
    monkeypatch.chdir(second)
    assert RetrySettings().max_attempts == 3
