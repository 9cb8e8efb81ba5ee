"""``aclbus bench``: aclbus measured side by side with raw nats-py and FastStream.

Each scenario runs every column (raw nats-py, the limit; FastStream, the peer; aclbus; and
aclbus on the memory backend) in the same process, against the same server, interleaved and
repeated; the report gives medians and aclbus' ratio to each. The NATS columns come from the
``aclbus_nats`` adapter through the ``aclbus_register_benchmarks`` hook: the core imports no
broker client.
"""

from __future__ import annotations

from aclbus.bench.bus_column import BusColumn
from aclbus.bench.drivers import Arrivals, publish_many, publish_paced, read_stamp, stamp
from aclbus.bench.errors import BenchError, BenchTimeout, UnknownScenario
from aclbus.bench.figures import COLUMNS, SCENARIOS, Figure
from aclbus.bench.plot import check_plotting, write_plot
from aclbus.bench.report import render_table, to_json, write_json
from aclbus.bench.runner import BenchOptions, Progress, run_bench
from aclbus.plugin.bench_columns import STEPS, Column, ColumnFactory, Params, Sample

__all__ = [
    "COLUMNS",
    "SCENARIOS",
    "STEPS",
    "Arrivals",
    "BenchError",
    "BenchOptions",
    "BenchTimeout",
    "BusColumn",
    "Column",
    "ColumnFactory",
    "Figure",
    "Params",
    "Progress",
    "Sample",
    "UnknownScenario",
    "check_plotting",
    "publish_many",
    "publish_paced",
    "read_stamp",
    "render_table",
    "run_bench",
    "stamp",
    "to_json",
    "write_json",
    "write_plot",
]
