from __future__ import annotations

import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

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


def test_disable_plugins_applies_to_defaults_but_never_to_the_selected_backend() -> None:
    pm = PluginManager(Settings(backend="nats", disable_plugins=["memory"]), entry_points=False)
    assert "memory" not in pm.backends()
    assert "memory" in pm.skipped
    bus = Bus(Settings(backend="memory", disable_plugins=["memory"]), entry_points=False)
    assert bus.backend.name == "memory"


def test_unknown_backend_names_installed_ones_and_the_package() -> None:
    with pytest.raises(UnknownBackend) as err:
        Bus(Settings(backend="natz"), entry_points=False)
    text = str(err.value)
    assert "Unknown backend 'natz'" in text
    assert "Installed: memory." in text
    with pytest.raises(UnknownBackend) as err:
        Bus(Settings(backend="nats"), entry_points=False)
    assert 'pip install "aclbus[nats]" (the package aclbus-nats)' in str(err.value)


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
    pm = PluginManager(Settings(plugins=["json"]))
    assert "hello" not in {i.name for i in pm.info()}
    pm = PluginManager(Settings(disable_plugins=["hello"]))
    assert "hello" not in {i.name for i in pm.info()}
    # allowed: imported, and its failure is reported with the plugin's name
    with pytest.raises(PluginError, match=r"plugin 'hello' .*failed to load: ModuleNotFoundError"):
        PluginManager(Settings(plugins=["hello"]))


# -- installed distributions: what `pip install aclbus-<name>` leaves on sys.path ----------


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Install a plugin distribution into a fresh sys.path entry (a dist-info and a module)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def install(dist: str, entry_point: str, module: str, code: str) -> None:
        (site / f"{module}.py").write_text(textwrap.dedent(code))
        info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[aclbus]\n{entry_point} = {module}\n")
        modules.append(module)

    yield install
    for module in modules:
        sys.modules.pop(module, None)


_FAKE_BACKEND = """
    from aclbus import hookimpl
    from aclbus.backends.memory import MemoryBackend

    class FakeBackend(MemoryBackend):
        name = "fake"

    @hookimpl
    def aclbus_register_backends(register):
        register("fake", FakeBackend)
"""


@pytest.mark.parametrize(
    "lists",
    [
        {"plugins": []},
        {"plugins": ["json"]},
        {"disable_plugins": ["fake-backend"]},
        {"plugins": ["json"], "disable_plugins": ["fake-backend", "memory"]},
    ],
    ids=["empty-allow-list", "allow-list", "deny-list", "both"],
)
def test_the_lists_never_leave_out_the_selected_backend(
    install: Callable[..., None], lists: dict[str, list[str]]
) -> None:
    # The entry point is not named after the backend: the plugin is found by what it registers.
    install("aclbus-fake", "fake-backend", "aclbus_fake_backend", _FAKE_BACKEND)
    bus = Bus(Settings(backend="fake", **lists))  # type: ignore[arg-type]
    assert bus.backend.name == "fake"
    assert "fake-backend" in {p.name for p in bus.plugins.info()}
    assert "fake-backend" not in bus.plugins.skipped


def test_a_left_out_plugin_that_registers_another_backend_stays_out(
    install: Callable[..., None],
) -> None:
    install("aclbus-fake", "fake-backend", "aclbus_fake_backend", _FAKE_BACKEND)
    pm = PluginManager(Settings(backend="memory", plugins=[]))
    assert "fake-backend" in pm.skipped
    assert "fake" not in pm.backends()


def test_the_allow_list_naming_no_installed_plugin_lists_the_installed_ones(
    install: Callable[..., None],
) -> None:
    install("aclbus-fake", "fake-backend", "aclbus_fake_backend", _FAKE_BACKEND)
    with pytest.raises(PluginError) as err:
        PluginManager(Settings(plugins=["json", "fake-backnd", "nosuch"]))
    text = str(err.value)
    assert "ACLBUS_PLUGINS names 'fake-backnd', 'nosuch', which are not installed" in text
    assert "Installed plugins: " in text
    assert "fake-backend" in text.split("Installed plugins: ")[1]
    assert "did you mean 'fake-backend' for 'fake-backnd'?" in text


def test_a_misspelled_hook_names_the_entry_point_and_the_distribution(
    install: Callable[..., None],
) -> None:
    install(
        "aclbus-typo",
        "typo",
        "aclbus_typo_plugin",
        """
        from aclbus import hookimpl

        @hookimpl
        def aclbus_midlewares(settings):
            return []
        """,
    )
    with pytest.raises(PluginError) as err:
        PluginManager(Settings(plugins=["typo"]))
    text = str(err.value)
    assert "plugin 'typo' (entry point typo = aclbus_typo_plugin" in text
    assert "from distribution aclbus-typo 1.0" in text
    assert "'aclbus_midlewares', which is no aclbus hook: did you mean 'aclbus_middlewares'?" in (
        text
    )


def _recorder(tag: str, mark: str) -> str:
    return f"""
        from aclbus import hookimpl

        @hookimpl{mark}
        def aclbus_middlewares(settings):
            def factory(bus):
                factory.tag = {tag!r}
                return factory
            factory.tag = {tag!r}
            return [factory]
    """


def test_middleware_order_follows_the_documented_rule(install: Callable[..., None]) -> None:
    """tryfirst, plain, trylast; within each, the later-registered plugin is outer.

    Entry points register in name order, whatever order they were installed in.
    """
    for name, mark in [
        ("zeta-last", "(trylast=True)"),
        ("alpha-last", "(trylast=True)"),
        ("mid-plain", ""),
        ("beta-plain", ""),
        ("omega-first", "(tryfirst=True)"),
        ("gamma-first", "(tryfirst=True)"),
    ]:
        install(
            f"aclbus-{name}", name, f"aclbus_order_{name.replace('-', '_')}", _recorder(name, mark)
        )
    names = ["zeta-last", "alpha-last", "mid-plain", "beta-plain", "omega-first", "gamma-first"]
    pm = PluginManager(Settings(plugins=names))
    order = [getattr(f, "tag", None) for f in pm.middlewares(Settings())]
    assert order == [
        "omega-first",
        "gamma-first",
        "mid-plain",
        "beta-plain",
        "zeta-last",
        "alpha-last",
    ]


def test_the_kafka_backend_names_the_package_that_will_provide_it() -> None:
    with pytest.raises(UnknownBackend) as err:
        Bus(Settings(backend="kafka"))
    assert "aclbus-kafka, which is not released yet" in str(err.value)
    with pytest.raises(UnknownBackend) as err:
        Bus(Settings(backend="redis"))
    assert "pip install" not in str(err.value)  # no such extra: do not invent one


async def test_the_provisioned_hook_runs_after_provisioning_and_before_agents_start() -> None:
    seen: list[str] = []

    class Provisioner:
        @hookimpl
        def aclbus_bus_provisioned(self, bus: Bus) -> object:
            async def provision() -> None:
                streams = await bus.backend.describe()
                seen.append(f"streams:{sorted(streams.get('streams', {}))!r}")
                seen.append(f"agent started:{bus.agent('early').started}")
                seen.append(f"middlewares:{len(bus.middlewares)}")

            return provision()

        @hookimpl
        def aclbus_bus_started(self, bus: Bus) -> None:
            seen.append(f"started, agent started:{bus.agent('early').started}")

    bus = Bus(Settings(backend="memory"), plugins=[Provisioner()], entry_points=False)
    bus.agent("early")  # made before start: started with the bus
    async with bus:
        pass
    assert seen == [
        "streams:['ACLBUS_AGENT', 'ACLBUS_BROADCAST', 'ACLBUS_DLQ', 'ACLBUS_GROUP', "
        "'ACLBUS_TOPIC']",
        "agent started:False",
        "middlewares:0",
        "started, agent started:True",
    ]


async def test_a_failing_provisioned_hook_fails_start_and_closes_the_backend() -> None:
    class Broken:
        @hookimpl
        def aclbus_bus_provisioned(self, bus: Bus) -> None:
            raise RuntimeError("no bucket for you")

    bus = Bus(Settings(backend="memory"), plugins=[Broken()])
    with pytest.raises(RuntimeError, match="no bucket for you"):
        await bus.start()
    assert not bus.started
    with pytest.raises(Exception, match=r"not connected|closed|not started"):
        await bus.backend.publish("aclbus.agent.x", {}, b"", msg_id=None)
