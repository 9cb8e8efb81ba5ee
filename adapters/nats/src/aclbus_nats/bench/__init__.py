"""The NATS columns of ``aclbus bench``: raw nats-py (the limit) and FastStream (the peer).

`aclbus_nats.plugin` registers them through ``aclbus_register_benchmarks``; each one runs on
the bench bus' server (the embedded one by default), with a stream of its own.
"""

from __future__ import annotations

from aclbus_nats.bench.peer import FastStreamColumn
from aclbus_nats.bench.raw import RawNatsColumn
from aclbus_nats.bench.target import BenchTarget

__all__ = ["BenchTarget", "FastStreamColumn", "RawNatsColumn"]
