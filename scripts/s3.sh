#!/usr/bin/env bash
# A local S3-compatible server for the store tests (moto's server, in memory):
# `scripts/s3.sh install|start|stop|status`. `install` pip-installs the pinned moto[server]
# from requirements-test.txt when `moto_server` is missing; `start` serves S3 on
# 127.0.0.1:9000 and returns once it answers an S3 request; it is idempotent and safe to run
# from parallel test processes (flock). `stop` ends only the process this script started (its
# pid file). Buckets live in memory: a restart empties the server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1
PORT=9000
DATA="${STYLESTREAM_S3_DIR:-/tmp/stylestream-s3}"
PIDFILE="$DATA/moto.pid"
LOG="$DATA/moto.log"

# An HTTP 200 to S3's ListBuckets, not just an open port.
answers() {
    (
        exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
        printf 'GET / HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$HOST" "$PORT" >&3
        timeout 5 head -c 15 <&3 | grep -q "^HTTP/1.[01] 200"
    ) 2>/dev/null
}

install() {
    if command -v moto_server >/dev/null; then return 0; fi
    echo "s3.sh: installing moto[server] (pinned in requirements-test.txt)" >&2
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet "$(grep -E '^moto\[server\]==' "$ROOT/requirements-test.txt")" >&2
    command -v moto_server >/dev/null || { echo "s3.sh: moto_server still not on PATH after pip install" >&2; exit 1; }
}

start() {
    mkdir -p "$DATA"
    exec 9>"$DATA/.lock"
    flock 9
    if answers; then return 0; fi
    install
    nohup moto_server -H "$HOST" -p "$PORT" >"$LOG" 2>&1 </dev/null 9>&- &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 300); do
        if answers; then return 0; fi
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            echo "s3.sh: moto_server exited at start; its log ($LOG):" >&2; cat "$LOG" >&2; exit 1
        fi
        sleep 0.2
    done
    echo "s3.sh: moto_server did not answer on $HOST:$PORT within 60 s; its log ($LOG):" >&2; cat "$LOG" >&2
    exit 1
}

stop() {
    [ -f "$PIDFILE" ] || return 0
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) if answers; then echo "moto_server answers on $HOST:$PORT"; else echo "moto_server is not running"; exit 1; fi ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
