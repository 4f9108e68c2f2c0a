#!/bin/sh
# Image entrypoint for every crs-alert service: prepare Prometheus multiprocess mode, then exec.
#
# PROMETHEUS_MULTIPROC_DIR must be set before Python imports prometheus_client (the value class is
# chosen at import), and must start empty: files left by a previous run of this container would
# be summed into the new process's counters.
set -eu

PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/crs-metrics}"
export PROMETHEUS_MULTIPROC_DIR

case "$PROMETHEUS_MULTIPROC_DIR" in
  /tmp/?*|/run/?*|/var/run/?*) ;;
  *) echo "entrypoint: refusing PROMETHEUS_MULTIPROC_DIR=$PROMETHEUS_MULTIPROC_DIR (use a directory under /tmp or /run)" >&2; exit 64 ;;
esac

mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -maxdepth 1 -name '*.db' -type f -delete

exec "$@"
