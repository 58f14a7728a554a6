#!/bin/sh
# Entry point of the Synapse images. When SYNAPSE_REDIS_TLS_ENDPOINT (host:port) is set, Redis is
# reached through stunnel: ElastiCache requires TLS for AUTH and hiredis 0.14 has no TLS, so
# stunnel listens on 127.0.0.1 and carries the connection over TLS (certificate chain and host
# name verified); SYNAPSE_REDIS then points at it, with SYNAPSE_REDIS_AUTH_TOKEN as the password.
# Everything lives in /tmp, the only writable place on Lambda. Then: exec synapse "$@".
set -eu

if [ -n "${SYNAPSE_REDIS_TLS_ENDPOINT:-}" ]; then
    host="${SYNAPSE_REDIS_TLS_ENDPOINT%:*}"
    port="${SYNAPSE_REDIS_TLS_ENDPOINT##*:}"
    [ "$host" = "$SYNAPSE_REDIS_TLS_ENDPOINT" ] && port=6379
    local_port="${SYNAPSE_REDIS_LOCAL_PORT:-6379}"
    conf="${TMPDIR:-/tmp}/synapse-stunnel.conf"
    cat > "$conf" <<CONF
foreground = no
pid = ${TMPDIR:-/tmp}/synapse-stunnel.pid
output = /dev/stderr
[redis]
client = yes
accept = 127.0.0.1:${local_port}
connect = ${host}:${port}
verifyChain = yes
CAfile = /etc/ssl/certs/ca-certificates.crt
checkHost = ${host}
CONF
    stunnel "$conf"
    auth=""
    if [ -n "${SYNAPSE_REDIS_AUTH_TOKEN:-}" ]; then auth=":${SYNAPSE_REDIS_AUTH_TOKEN}@"; fi
    SYNAPSE_REDIS="redis://${auth}127.0.0.1:${local_port}"
    export SYNAPSE_REDIS
    unset SYNAPSE_REDIS_AUTH_TOKEN
fi

exec /usr/local/bin/synapse "$@"
