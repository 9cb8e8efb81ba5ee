from __future__ import annotations

import types

import pytest

from aclbus import (
    Backend,
    Bus,
    Capabilities,
    CapabilityError,
    JsonCodec,
    PluginError,
    Settings,
    UnknownBackend,
    hookimpl,
)
from aclbus.codec import JSON
from aclbus.plugin.manager import PluginManager


def _module(name: str, **hooks: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    for key, value in hooks.items():
        setattr(mod, key, value)
    return mod


def test_default_plugins_are_loaded_like_third_party_ones() -> None:
    pm = PluginManager(Settings(), entry_points=False)
    names = {info.name: info for info in pm.info()}
    assert names["memory"].hooks == ("aclbus_register_backends",)
    assert names["json"].hooks == ("aclbus_register_codecs",)
    assert names["memory"].distribution == "aclbus"
    assert "memory" in pm.backends()
    assert pm.codecs().default.content_type == JSON


def test_misspelled_hook_fails_loudly() -> None:
    @hookimpl
    def aclbus_midlewares(settings: Settings) -> list[object]:
        return []

    with pytest.raises(PluginError, match="aclbus_midlewares"):
        PluginManager(Settings(), [_module("typo", aclbus_midlewares=aclbus_midlewares)])


def test_disable_plugins_applies_to_defaults() -> None:
    pm = PluginManager(Settings(disable_plugins=["memory"]), entry_points=False)
    assert "memory" not in pm.backends()
    with pytest.raises(UnknownBackend) as err:
        Bus(Settings(backend="memory", disable_plugins=["memory"]), entry_points=False)
    assert "Unknown backend 'memory'" in str(err.value)


def test_unknown_backend_names_installed_ones_and_the_package() -> None:
    with pytest.raises(UnknownBackend) as err:
        Bus(Settings(backend="kafka"))
    text = str(err.value)
    assert "Unknown backend 'kafka'" in text
    assert "memory" in text
    assert 'pip install "aclbus[kafka]"' in text


def test_two_plugins_registering_one_backend_name_is_an_error() -> None:
    class Other(Backend):  # never instantiated
        pass

    @hookimpl
    def aclbus_register_backends(register: object) -> None:
        register("memory", Other)  # type: ignore[operator]

    pm = PluginManager(
        Settings(), [_module("clash", aclbus_register_backends=aclbus_register_backends)]
    )
    with pytest.raises(PluginError, match="registered by both 'memory' and 'clash'"):
        pm.backends()


def test_a_registration_error_names_the_plugin() -> None:
    @hookimpl
    def aclbus_register_codecs(register: object) -> None:
        register("not a codec")  # type: ignore[operator]

    pm = PluginManager(
        Settings(), [_module("badcodec", aclbus_register_codecs=aclbus_register_codecs)]
    )
    with pytest.raises(PluginError, match="badcodec"):
        pm.codecs()


def test_duplicate_codec_content_type_is_an_error() -> None:
    @hookimpl
    def aclbus_register_codecs(register: object) -> None:
        register(JsonCodec())  # type: ignore[operator]

    pm = PluginManager(
        Settings(), [_module("json2", aclbus_register_codecs=aclbus_register_codecs)]
    )
    with pytest.raises(PluginError, match=r"json2.*already registered"):
        pm.codecs()


def test_required_capability_missing_fails_at_start_up() -> None:
    class Needy:
        @hookimpl
        def aclbus_required_capabilities(self, settings: Settings) -> Capabilities:
            return Capabilities(ack=True, kv=True)

    # The memory backend has every capability, so the bus is made...
    Bus(Settings(), plugins=[Needy()])

    # ...but a backend without them is refused before anything starts.
    from aclbus.backends.memory import MemoryBackend

    class Bare(MemoryBackend):
        name = "bare"
        capabilities = Capabilities(persistent=True)

    with pytest.raises(CapabilityError) as err:
        Bus(Settings(), plugins=[Needy()], backend=Bare())
    assert err.value.missing == ["ack", "kv"]
    assert "Needy" in str(err.value)
    assert "'bare'" in str(err.value)


def test_plugin_returning_a_wrong_type_is_named() -> None:
    class Wrong:
        @hookimpl
        def aclbus_required_capabilities(self, settings: Settings) -> object:
            return {"ack": True}

    with pytest.raises(PluginError, match="not a Capabilities"):
        Bus(Settings(), plugins=[Wrong()])


def test_allow_list_filters_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    ep = metadata.EntryPoint(name="hello", value="aclbus_hello_fake", group="aclbus")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [ep] if group == "aclbus" else [])
    # not allowed: not even imported (the module does not exist)
    pm = PluginManager(Settings(plugins=["other"]))
    assert "hello" not in {i.name for i in pm.info()}
    pm = PluginManager(Settings(disable_plugins=["hello"]))
    assert "hello" not in {i.name for i in pm.info()}
    # allowed: imported, and its failure is reported with the plugin's name
    with pytest.raises(PluginError, match=r"plugin 'hello' .*failed to load: ModuleNotFoundError"):
        PluginManager(Settings(plugins=["hello"]))
