"""Plugins: pluggy hooks prefixed ``aclbus_``, found through the ``aclbus`` entry point group.

Write a hook implementation with `hookimpl`:

```python
from aclbus import hookimpl

@hookimpl
def aclbus_register_backends(register):
    register("mine", MyBackend)
```

The hooks are documented in ``docs/plugins.md`` and in `aclbus.plugin.spec`.
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT", "hookimpl"]

PROJECT = "aclbus"
"""The pluggy project name, also the entry point group plugins are found in."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a function as an aclbus hook implementation (``tryfirst``/``trylast`` order it)."""
