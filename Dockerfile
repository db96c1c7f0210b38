# syntax=docker/dockerfile:1
# GitOps Autofix image: the webhook service (`autofix serve`), git for the GitOps checkout, kubectl for
# `kubectl kustomize` rendering. Runs as a non-root user on a read-only root filesystem: the data dir is a
# volume (/data) and HOME is /tmp (an emptyDir in the chart).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY policies ./policies
RUN python -m venv /opt/autofix \
 && /opt/autofix/bin/pip install --no-cache-dir '.[helm]' \
 && cp -r policies /opt/autofix/policies

FROM python:3.11-slim-bookworm
# Debian's versions are not pinned: the security archive replaces them, and a pin would break the build.
# kubernetes-client is Debian's kubectl (bookworm: 1.20, with an embedded kustomize); git for the checkout;
# tini reaps git's children and forwards SIGTERM to uvicorn for a graceful drain.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git kubernetes-client tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 autofix \
 && useradd --system --uid 10001 --gid autofix --home-dir /tmp --shell /usr/sbin/nologin autofix \
 && mkdir -p /data \
 && chown autofix:autofix /data
COPY --from=build /opt/autofix /opt/autofix
ENV PATH=/opt/autofix/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    AUTOFIX_DATA_DIR=/data \
    AUTOFIX_POLICY_DIR=/opt/autofix/policies
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["/usr/bin/tini", "--", "autofix"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
