# syntax=docker/dockerfile:1
# GitOps Autofix image: the webhook service (`autofix serve`), git for the GitOps checkout, and the renderers
# that verify a fix the way Argo CD and Flux will render it: a standalone kustomize v5 and Helm 3, each copied
# from its image (no curl | sh, no Debian kubectl 1.20 with its kustomize v2). Runs as a non-root user on a
# read-only root filesystem: the data dir is a volume (/data) and HOME is /tmp (an emptyDir in the chart).
#
# Renderer images, pinned by tag AND digest (a multi-arch index: amd64 and arm64). No registry is reachable
# where this file was written, so the digests were not pulled here: each is the one published material pins
# for that tag (renovate-managed files, several independent repositories agreeing):
# - registry.k8s.io/kustomize/kustomize:v5.8.1 (the official kustomize image, built by the kustomize project)
#   sha256:899fcd3bc898160e62bcaf82932b0cb29ba38d16272353db2e7acbba82129429
#   (e.g. CloudNativePG's dagger helmify module: "renovate image: datasource=docker
#   depName=registry.k8s.io/kustomize/kustomize").
# - alpine/helm:3.19.0 (Helm publishes tarballs only; alpine/helm is the maintained image of those release
#   binaries, at /usr/bin/helm) sha256:aef9b56f64e866207d9591d0abd8f6d767b36aadd12edf68f8a719716d9d29c9.
# Check both before a release: `docker buildx imagetools inspect IMAGE:TAG` must print the same digest.
FROM registry.k8s.io/kustomize/kustomize:v5.8.1@sha256:899fcd3bc898160e62bcaf82932b0cb29ba38d16272353db2e7acbba82129429 AS kustomize
FROM alpine/helm:3.19.0@sha256:aef9b56f64e866207d9591d0abd8f6d767b36aadd12edf68f8a719716d9d29c9 AS helm

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
# git for the checkout; tini reaps git's children and forwards SIGTERM to uvicorn for a graceful drain.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 autofix \
 && useradd --system --uid 10001 --gid autofix --home-dir /tmp --shell /usr/sbin/nologin autofix \
 && mkdir -p /data \
 && chown autofix:autofix /data
COPY --from=build /opt/autofix /opt/autofix
# Static Go binaries: they run on Debian as they do in their Alpine/distroless images.
COPY --from=kustomize --chmod=0755 /app/kustomize /usr/local/bin/kustomize
COPY --from=helm --chmod=0755 /usr/bin/helm /usr/local/bin/helm
ENV PATH=/opt/autofix/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    AUTOFIX_DATA_DIR=/data \
    AUTOFIX_POLICY_DIR=/opt/autofix/policies \
    AUTOFIX_POLICY_DEFAULTS=/opt/autofix/policies/default.yaml
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["/usr/bin/tini", "--", "autofix"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
