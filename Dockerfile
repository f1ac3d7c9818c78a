# cyberevents: `docker build -t cyberevents .`, then `docker run cyberevents run` (or run-once, migrate, …).
# Two stages: the first builds the wheel and a virtual environment with everything installed; the second is a
# slim Python with that environment copied in, no build tools, running as an unprivileged user.

# The base image, an exact Python release (the one requirements/*.txt were locked with). To pin it by digest as well,
# pass it with one: --build-arg PYTHON_BASE=python:3.11.7-slim-bookworm@sha256:… (docs/operations.md, "Upgrading").
ARG PYTHON_BASE=python:3.11.7-slim-bookworm

FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/runtime.txt requirements/build.txt ./requirements/
COPY src ./src
COPY alembic ./alembic
# Every dependency at its locked version and hash, the build backend's too (no embedded PostgreSQL: the image runs
# against a real one), then the same wheel CI builds and runs (.ci/run): installed, never copied as source.
RUN pip install --require-hashes -r requirements/build.txt \
    && pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && python -m venv /opt/cyberevents \
    && /opt/cyberevents/bin/pip install --require-hashes -r requirements/runtime.txt \
    && /opt/cyberevents/bin/pip install --no-deps /wheels/cyberevents-*.whl

FROM ${PYTHON_BASE}
COPY --from=build /opt/cyberevents /opt/cyberevents
RUN groupadd --system --gid 10001 cyberevents \
    && useradd --system --uid 10001 --gid cyberevents --home-dir /var/lib/cyberevents --create-home cyberevents
# HEALTH_HOST: the probes must be reachable from outside the container. DATA_DIR is the unprivileged user's home;
# the image has no embedded PostgreSQL to keep there (DATABASE_URL is required).
ENV PATH=/opt/cyberevents/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTH_HOST=0.0.0.0 \
    HEALTH_PORT=8080 \
    DATA_DIR=/var/lib/cyberevents
USER 10001:10001
WORKDIR /var/lib/cyberevents
EXPOSE 8080
# /livez answers 200 while the scheduler runs and the event loop beats; it never waits on the database.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['HEALTH_PORT']}/livez\", timeout=4)"]
ENTRYPOINT ["python", "-m", "cyberevents"]
CMD ["run"]
