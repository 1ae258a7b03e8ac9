# syntax=docker/dockerfile:1

# cancel-bridge: the receiver image.
#
#   docker build -t cancel-bridge .
#   docker run --rm -p 127.0.0.1:8080:8080 \
#     -e AMQP_URL=amqp://guest:guest@rabbitmq:5672/ -e SHOPLAZZA_CLIENT_SECRET=... \
#     -v "$PWD/docs/config.example.toml:/etc/cancel-bridge/config.toml:ro" cancel-bridge
#
# The configuration is not baked in: mount it at /etc/cancel-bridge/config.toml (compose.yaml
# does). Its [receiver] host must be 0.0.0.0, or the published port reaches nothing.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project and its dependencies into a virtualenv ---------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
# pyproject.toml names README.md as the readme: the build fails without it.
COPY pyproject.toml README.md ./
# Exactly the packages [tool.setuptools] ships.
COPY bridge ./bridge
COPY handlers ./handlers
COPY contracts ./contracts
# A regular (non-editable) install: the runtime stage copies the venv and never sees /src.
RUN /opt/venv/bin/pip install --no-compile . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="cancel-bridge" \
      org.opencontainers.image.description="Order-cancellation webhooks in, confirmed RabbitMQ events out"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed numeric uid/gid, so `runAsNonRoot` policies and volume ownership can rely on it.
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid bridge --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin bridge \
    && mkdir -p /etc/cancel-bridge /var/lib/cancel-bridge \
    && chown 10001:10001 /var/lib/cancel-bridge

# Same base image and same path as the build stage, so the venv's interpreter links still hold.
COPY --from=build /opt/venv /opt/venv

USER 10001:10001

# The state store's default SQLite file ([store] path = "cancel-bridge.db") is relative to the
# working directory: mount a volume here (compose.yaml does) so it outlives the container, or
# point [store] url_env at PostgreSQL.
WORKDIR /var/lib/cancel-bridge
VOLUME /var/lib/cancel-bridge

EXPOSE 8080

# Liveness only (/healthz: the process answers). /readyz (broker and store up) is for a load
# balancer: a broker outage must not get the container restarted. slim has no curl; urlopen raises on
# a refused connection or a non-2xx answer, so the exit status is 1.
# The port is the config's [receiver] port: change both together.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]

# Exec form: cancel-bridge is PID 1 and receives SIGTERM itself (it drains in-flight requests
# for [receiver] shutdown_timeout seconds, then exits).
ENTRYPOINT ["cancel-bridge"]
CMD ["run", "--config", "/etc/cancel-bridge/config.toml"]
