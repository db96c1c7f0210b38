#!/usr/bin/env bash
# System packages the tests run for real, installed with apt-get when missing (needs root, as on CI).
# Alertmanager (+ amtool) for the end-to-end test; Prometheus (+ promtool) for the metrics tests, which backfill
# a TSDB and query it; kubectl for `kubectl kustomize` (Debian ships it as kubernetes-client: there is no Debian
# package named kubectl; the machine image usually has kubectl); PostgreSQL's server for the job store's tests on
# PostgreSQL (tests/fakes/postgres.py runs initdb and pg_ctl from /usr/lib/postgresql/*/bin on a temporary directory).
set -euo pipefail
missing=()
command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 \
  || missing+=(prometheus-alertmanager)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ] && { [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; }; then
  echo "please install: ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
elif [ "${#missing[@]}" -gt 0 ]; then
  for attempt in 1 2 3; do  # a mirror hiccup must not fail the run: retry with a pause
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         "${missing[@]}" >/dev/null; then
      break
    fi
    echo "warning: apt-get install ${missing[*]} failed (attempt $attempt)" >&2
    sleep $((attempt * 5))
  done
fi
# Debian's units start Alertmanager (0.0.0.0:9093/9094) and Prometheus (0.0.0.0:9090, scraping itself) on install;
# Debian's postgresql creates and starts a cluster (15/main on 5432). The tests start their own on loopback.
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop prometheus-alertmanager >/dev/null 2>&1 || true
  systemctl stop prometheus >/dev/null 2>&1 || true
  systemctl stop postgresql >/dev/null 2>&1 || true
fi
if command -v pg_lsclusters >/dev/null 2>&1; then  # no systemd (a container): pg_ctlcluster started it
  pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _port status _rest; do
    [ "$status" = online ] && pg_ctlcluster "$version" "$cluster" stop >/dev/null 2>&1 || true
  done
fi
