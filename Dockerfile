# The one image of time-manager: tm-service, tm-streams, tm-operator and tmctl,
# each a console script on PATH; the chart picks one per container with
# `command`. Built in two stages so that pip, the wheel build and the sources
# stay out of the image that runs.
#
#   docker build -t time-manager:dev .
#
# The base is pinned by version; pin it by digest too where your registry
# policy asks for it: --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/time-manager
WORKDIR /src
# The packaging first, so that a change of code alone reuses nothing but it.
COPY pyproject.toml README.md ./
COPY domain domain
COPY adapters adapters
COPY services services
COPY streams streams
COPY operator operator
COPY cli cli
COPY local local
# Compiled here, once: the running container's root filesystem is read-only.
RUN /opt/time-manager/bin/pip install --no-compile . \
 && /opt/time-manager/bin/python -m compileall -q -j 0 /opt/time-manager/lib \
 && /opt/time-manager/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="time-manager" \
      org.opencontainers.image.description="Time service, reminder worker and operator of time-manager"
# A user of our own with a fixed id, the one the chart's securityContext runs.
RUN groupadd --system --gid 10001 timemanager \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin timemanager
COPY --from=build /opt/time-manager /opt/time-manager
ENV PATH=/opt/time-manager/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TM_SERVICE_HOST=0.0.0.0 \
    TM_STREAMS_WEB_HOST=0.0.0.0 \
    TM_STREAMS_DATA_DIR=/tmp/tm-streams
USER 10001:10001
WORKDIR /tmp
# tm-service's API, tm-streams' web port, tm-operator's liveness endpoint.
EXPOSE 5500 6066 8080
CMD ["tm-service"]
