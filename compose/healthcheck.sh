#!/bin/bash
# HEALTHCHECK of the project's images: GET PATH (default /ready) on HEALTH_PORT, else the port in
# APP_LISTEN, and succeed on HTTP 200. The runtime images have no curl; bash's /dev/tcp is enough.
path="${1:-/ready}"
port="${HEALTH_PORT:-${APP_LISTEN##*:}}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" >&3
IFS= read -r status <&3
[[ "$status" == *" 200 "* ]]
