# The aclbus image: the gateway (`aclbus serve`, the default command) and agents (any other
# command: `docker run ... aclbus python -m my_agent`). docs/deployment.md shows both.
#
#   docker build -t aclbus:0.1.0 .
#
# Two stages: the builder installs the workspace's packages (not editable, no dev tools) into
# /opt/venv with uv, at the versions pinned in pyproject.toml's constraint-dependencies; the
# final stage is python:3.11-slim with that venv and nothing else (no uv, no sources).

FROM python:3.11-slim AS builder

# The image's own Python (the venv's interpreter is /usr/local/bin/python3.11 in both stages);
# bytecode compiled here, since the final stage may run with a read-only file system.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

# The same uv as the Makefile's bootstrap.
RUN pip install --no-cache-dir "uv==0.13.8"

WORKDIR /src
COPY pyproject.toml ./
COPY core ./core
COPY adapters ./adapters
COPY plugins ./plugins

# Every workspace package (core, the NATS adapter with its nats-server binary, the plugins
# and the gateway); --no-dev leaves out the test and documentation tools.
RUN uv sync --all-packages --no-dev --no-editable


FROM python:3.11-slim

# A user of its own, never root; the Kubernetes manifests name the same ids.
RUN groupadd --system --gid 10001 aclbus \
    && useradd --system --uid 10001 --gid aclbus --create-home --home-dir /home/aclbus aclbus

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /home/aclbus

# The gateway's port (ACLBUS_GATEWAY__PORT); /health/live and /health/ready for probes.
EXPOSE 8000

CMD ["aclbus", "serve", "--host", "0.0.0.0"]
