#!/usr/bin/env bash
# Exit 0 only when a Docker daemon is reachable and can pull images (what molecule/kind needs); otherwise print
# one line saying why and exit 1. `make test-e2e` uses it to skip the real end-to-end scenario.
# Probe image: small and pinned; override with CAN_PULL_IMAGE (e.g. a mirror), timeout with CAN_PULL_TIMEOUT.
set -u
image="${CAN_PULL_IMAGE:-docker.io/library/busybox:1.36.1}"
limit="${CAN_PULL_TIMEOUT:-120}"

if ! command -v docker >/dev/null 2>&1; then
  echo "cannot pull images: the docker CLI is not installed (install Docker to run molecule/kind)"
  exit 1
fi
if ! err=$(timeout 20 docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null); then
  echo "cannot pull images: the Docker daemon is not reachable ($(printf '%s' "$err" | tr '\n' ' ' | cut -c1-160))"
  exit 1
fi
if ! err=$(timeout "$limit" docker pull --quiet "$image" 2>&1 >/dev/null); then
  echo "cannot pull images: 'docker pull $image' failed ($(printf '%s' "$err" | tr '\n' ' ' | cut -c1-160))"
  exit 1
fi
exit 0
