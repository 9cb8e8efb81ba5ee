"""``aclbus.toml``: read once, one table per settings class, every key checked against a field.

The file holds the core's settings at its top level (``backend = "memory"``, a ``[streams]``
table) and one table per adapter or plugin (``[nats]``, ``[retry]``), each read by that
package's `aclbus.settings.SectionSettings`. A table that is missing means defaults. A key
that no setting has, or a table that no installed package reads, is a typo far more often
than not, so it fails with a `ConfigurationError` naming the file, the table, the key and
the closest known name, rather than being ignored and leaving the user wondering why their
setting does nothing.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel
from pydantic_settings import BaseSettings, InitSettingsSource, TomlConfigSettingsSource

from aclbus.errors import ConfigurationError

__all__ = [
    "CONFIG_FILE",
    "ConfigFileSource",
    "check_config_file",
    "check_keys",
    "read_config_file",
    "register_section",
    "sections",
]

CONFIG_FILE: Final = "aclbus.toml"
"""The configuration file's name, looked for in the working directory."""

_sections: dict[str, type[BaseModel]] = {}
_cache: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}  # by absolute path


def register_section(name: str, model: type[BaseModel]) -> None:
    """Record that ``model`` reads the table ``[name]`` (done for every `SectionSettings`).

    A later class for the same table replaces the earlier one (a subclass adds fields).
    """
    _sections[name] = model


def sections() -> Mapping[str, type[BaseModel]]:
    """The tables known so far and the settings class that reads each."""
    return types.MappingProxyType(_sections)


def read_config_file(path: str | Path = CONFIG_FILE) -> dict[str, Any]:
    """The parsed file, or an empty dict if there is none.

    Parsed again only when the file changed (its size or modification time), since every
    settings class of a bus reads it.

    Raises:
        ConfigurationError: The file is not valid TOML; the message names the line.
    """
    file = Path(path)
    try:
        stat = file.stat()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    key = (stat.st_mtime_ns, stat.st_size)
    where = file.resolve()  # the cache is per file: "aclbus.toml" names another in each cwd
    cached = _cache.get(where)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigurationError(f"{file}: cannot be read: {exc.strerror or exc}") from None
    _cache[where] = (key, data)
    return data


def check_keys(model: type[BaseModel], table: Mapping[str, Any], file: Path, where: str) -> None:
    """Check that every key of ``table`` is a field of ``model``, nested tables included.

    Args:
        model: The settings class (or nested model) the table is read into.
        table: The table's contents.
        file: The file, for the message.
        where: The table's name for the message (``"[retry]"``, ``"the top level"``).

    Raises:
        ConfigurationError: A key is no field of ``model``; the message names the file, the
            table and the key, and the closest field name when one is close.
    """
    fields = {name.lower(): name for name in model.model_fields}
    for key, value in table.items():
        name = fields.get(key.lower())
        if name is None:
            raise ConfigurationError(
                f"{file}: unknown key {key!r} {_at(where)}{_close(key, model.model_fields)}"
            )
        nested = _nested_model(model.model_fields[name].annotation)
        if nested is None or not isinstance(value, Mapping):
            continue
        kind, inner = nested
        inner_where = f"[{_dotted(where, name)}]"
        if kind == "model":
            check_keys(inner, value, file, inner_where)
        else:  # a dict of models, keyed by a name of the user's (``[retry.agents.worker]``)
            for entry, item in value.items():
                if isinstance(item, Mapping):
                    check_keys(inner, item, file, f"[{_dotted(where, name)}.{entry}]")


def check_config_file(
    core: type[BaseModel],
    installed: Collection[str],
    path: str | Path = CONFIG_FILE,
) -> None:
    """Check the whole file: core keys, and each table against the package that reads it.

    Called by the bus once its plugins are loaded, since that is when every adapter's and
    plugin's settings class is known.

    Args:
        core: The core's settings class (its fields are the top-level keys and tables).
        installed: Names of the installed plugins. A table named after one whose settings
            class is not known (a plugin switched off by ``ACLBUS_DISABLE_PLUGINS``, which is
            not imported) is accepted unread, so that switching a plugin off does not make its
            table an error.
        path: The file.

    Raises:
        ConfigurationError: A key or table nobody reads, with the closest known name.
    """
    data = read_config_file(path)
    if not data:
        return
    file = Path(path)
    top = {k: v for k, v in data.items() if k.lower() in _lower(core.model_fields)}
    check_keys(core, top, file, "the top level")
    for key, value in data.items():
        if key in top:
            continue
        model = _sections.get(key) or _sections.get(key.lower())
        if model is not None and isinstance(value, Mapping):
            check_keys(model, value, file, f"[{key}]")
        elif key not in installed or not isinstance(value, Mapping):
            known = [*core.model_fields, *_sections, *installed]
            what = "table" if isinstance(value, Mapping) else "key"
            raise ConfigurationError(
                f"{file}: unknown {what} {key!r} at the top level: neither a core setting nor "
                f"the table of an installed adapter or plugin{_close(key, known)}"
            )


class ConfigFileSource(TomlConfigSettingsSource):
    """The settings source of ``aclbus.toml`` for one settings class.

    It stands in for pydantic-settings' TOML source (whose ``toml_file`` and
    ``toml_table_header`` config it reads), which raises a bare ``KeyError`` for a missing
    table and ignores unknown keys.

    A class whose config has ``toml_table_header = ("retry",)`` reads the ``[retry]`` table
    (none: its defaults); the core's `Settings` reads the top level. Either way, a key that
    the class has no field for is a `ConfigurationError` at once. Tables at the top level
    that are not core settings belong to adapters and plugins, checked by
    `check_config_file`.
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        configured = settings_cls.model_config.get("toml_file")
        file = Path(configured if isinstance(configured, str | Path) else CONFIG_FILE)
        data = read_config_file(file)
        header = settings_cls.model_config.get("toml_table_header") or ()
        table: Any = data
        for name in header:
            table = table.get(name, {}) if isinstance(table, Mapping) else None
            if not isinstance(table, Mapping):
                raise ConfigurationError(
                    f"{file}: {name!r} must be a table ([{'.'.join(header)}]), "
                    f"not a {type(table).__name__}"
                )
        if header:
            check_keys(settings_cls, table, file, f"[{'.'.join(header)}]")
        else:
            # The top level: plain keys must be core settings; tables that are not core
            # settings belong to adapters and plugins (checked by check_config_file).
            own = _lower(settings_cls.model_fields)
            table = {
                k: v for k, v in table.items() if k.lower() in own or not isinstance(v, Mapping)
            }
            check_keys(settings_cls, table, file, "the top level")
        self.toml_file_path = file
        self.toml_table_header = header
        self.toml_data = dict(table)
        # The parent's __init__ is the file reading replaced here: go to InitSettingsSource.
        InitSettingsSource.__init__(self, settings_cls, self.toml_data)

    def __repr__(self) -> str:
        return f"ConfigFileSource({self.settings_cls.__name__})"


def _at(where: str) -> str:
    return f"at {where}" if where == "the top level" else f"in {where}"


def _lower(names: Iterable[str]) -> set[str]:
    return {n.lower() for n in names}


def _close(key: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(key.lower(), sorted({k.lower() for k in known}), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _dotted(where: str, name: str) -> str:
    return name if where == "the top level" else f"{where.strip('[]')}.{name}"


def _nested_model(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """The model nested in a field's annotation, if any.

    ``("model", M)`` for ``M`` or ``M | None``, ``("dict", M)`` for ``dict[str, M]``; None for
    anything else.
    """
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (dict, Mapping) and len(args) == 2:
        inner = _nested_model(args[1])
        return ("dict", inner[1]) if inner is not None and inner[0] == "model" else None
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in args:
            found = _nested_model(arg)
            if found is not None:
                return found
    return None
