#!/usr/bin/env bash
# Installs the Debian packages Synapse needs to build, test and run, and only those missing.
# Idempotent; when everything is present it makes one dpkg-query call and exits (well under 2 s).
# `make run`, `make test` and .ci/run call it; nothing else in the project installs anything.
set -euo pipefail

PACKAGES=(
    gcc make pkg-config            # build
    clang libclang-rt-14-dev       # fuzz targets (libFuzzer) and clang sanitizers
    clang-format                   # make format-check
    libhiredis-dev libevent-dev libjansson-dev
    redis-server                   # the job queue; integration tests start private ones
    python3-numpy                  # the independent NumPy reference in the engine tests
    gnuplot-nox                    # charts of the load and cost benchmarks (bench/load)
    wrk                            # closed-loop HTTP load of the gateway benchmarks (bench/gateway.sh)
    libssl-dev                     # SigV4 signing (HMAC-SHA256) for the AWS pool backends
    libcurl4-openssl-dev           # HTTP transport for AWS APIs and the Lambda runtime
    prometheus prometheus-pushgateway prometheus-redis-exporter  # observability stack and its tests (promtool)
)

missing=()
# One dpkg-query for all packages: prints "name installed" for each that is fully installed.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
for p in "${PACKAGES[@]}"; do
    grep -qx "$p installed" <<<"$installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
