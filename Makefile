# The two commands of README.md: `make demo` (the main job) and `make test` (everything CI runs).
# Both bootstrap themselves on a machine that has only python3, pip and make: uv is installed
# into .tools/ when it is not on PATH, then uv builds .venv from the pinned workspace. `make
# test` also needs apt-get and dpkg (Debian, Ubuntu) for promtool and Prometheus (`tools`), and
# valgrind (tests/test_bench_instructions.py runs the instruction counter).

UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
# Python comes from the machine: no interpreter downloads (only package registries are reachable).
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON ?= python3

.PHONY: demo bench bench-instructions test lint type docs pytest sync tools clean

demo: sync
	$(UV) run --no-sync aclbus demo

# docs/performance.md's figures: every scenario, raw nats-py / FastStream / aclbus / memory.
bench: sync
	$(UV) run --no-sync aclbus bench --json bench.json --plot bench.png

# Instructions per message on the memory backend (publish, consume, request-reply, core and
# durable end to end), counted by valgrind's callgrind: the figure that shows a change of a few
# per cent where wall-clock noise hides it. Options through ARGS, e.g. ARGS="--against old.json"
# or ARGS="--base main" (docs/performance.md, "Instructions per message").
bench-instructions: sync
	$(UV) run --no-sync python benchmarks/instructions/run.py --json bench-instructions.json $(ARGS)

test: sync lint type docs pytest

# lint-imports: the layers and the other import contracts of pyproject.toml [tool.importlinter].
lint: sync
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync lint-imports

type: sync
	$(UV) run --no-sync mypy core/src adapters/nats/src $(wildcard plugins/*/src)

# The documentation site (mkdocs.yml) into site/. --strict: a broken link or anchor, a page
# missing from the nav, an unresolved cross-reference or a docstring griffe cannot read is an
# error. (NO_MKDOCS_2_WARNING only silences Material's banner about its end of life.)
docs: sync
	NO_MKDOCS_2_WARNING=1 $(UV) run --no-sync mkdocs build --strict

# pytest exits 5 when it collected nothing; make treats any non-zero exit as a failure.
# The alert-rule tests (tests/deploy) run Debian's promtool and Prometheus server.
pytest: sync tools
	$(UV) run --no-sync pytest

sync: $(UV)
	$(UV) sync --all-packages --quiet

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# promtool and prometheus (deploy/prometheus's tests) from Debian's `prometheus` package,
# unpacked into .tools/prometheus/ without installing it (no root needed). apt's own lists
# first; where they lack the package (a fresh machine, stale lists), apt reads fresh lists
# into a private state folder and downloads from there.
PROMETHEUS_TOOLS := .tools/prometheus
APT_PRIVATE = -o Dir::State::Lists=$(abspath $(PROMETHEUS_TOOLS))/apt/lists \
	-o Dir::Cache=$(abspath $(PROMETHEUS_TOOLS))/apt/cache -o Debug::NoLocking=1

tools: $(PROMETHEUS_TOOLS)/usr/bin/promtool

$(PROMETHEUS_TOOLS)/usr/bin/promtool:
	rm -rf $(PROMETHEUS_TOOLS)
	mkdir -p $(PROMETHEUS_TOOLS)/apt/lists/partial $(PROMETHEUS_TOOLS)/apt/cache/archives/partial
	cd $(PROMETHEUS_TOOLS) && { apt-get -q download prometheus || \
		{ apt-get -q $(APT_PRIVATE) update && apt-get -q $(APT_PRIVATE) download prometheus; }; }
	dpkg -x $(PROMETHEUS_TOOLS)/prometheus_*.deb $(PROMETHEUS_TOOLS)
	rm -rf $(PROMETHEUS_TOOLS)/prometheus_*.deb $(PROMETHEUS_TOOLS)/apt
	$@ --version
	touch $@

clean:
	rm -rf .venv .tools .tox .pytest_cache .mypy_cache .ruff_cache .hypothesis site
