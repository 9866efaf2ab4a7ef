#!/bin/bash
# The image's HEALTHCHECK: GET /healthz on the server's HTTP port without curl (the base is Debian minbase), through
# bash's /dev/tcp. Healthy when the status line is 200. KVDB_HTTP_PORT must match `serve --http-port` (default 50052);
# with --tls-cert the HTTP port speaks TLS too, so override HEALTHCHECK (or run with --no-healthcheck) in that case.
port="${KVDB_HTTP_PORT:-50052}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 3 status <&3 || exit 1
exec 3<&-
[[ "$status" == HTTP/1.?" 200"* ]]
