#!/usr/bin/env bash
# Azurite (Azure Blob emulator) for the store tests: `scripts/azurite.sh install|start|stop|status`.
# Installs azurite@3.37.0 with npm into .tools/ (git-ignored) when missing; `start` serves
# blobs on 127.0.0.1:10000 with its data under /tmp and returns once the port answers; it is
# idempotent and safe to run from parallel test processes (flock). `stop` ends only the
# process this script started (its pid file).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION=3.37.0
TOOLS="$ROOT/.tools"
BIN="$TOOLS/node_modules/.bin/azurite-blob"
HOST=127.0.0.1
PORT=10000
DATA="${STYLESTREAM_AZURITE_DIR:-/tmp/stylestream-azurite}"
PIDFILE="$DATA/azurite.pid"
LOG="$DATA/azurite.log"

answers() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

install() {
    if [ -x "$BIN" ] && grep -q "\"version\": \"$VERSION\"" "$TOOLS/node_modules/azurite/package.json" 2>/dev/null; then
        return 0
    fi
    command -v npm >/dev/null || { echo "azurite.sh: npm not found (apt-get install nodejs npm)" >&2; exit 1; }
    echo "azurite.sh: installing azurite@$VERSION into $TOOLS" >&2
    mkdir -p "$TOOLS"
    npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error "azurite@$VERSION" >&2
}

start() {
    mkdir -p "$DATA"
    exec 9>"$DATA/.lock"
    flock 9
    if answers; then return 0; fi
    install
    nohup "$BIN" --blobHost "$HOST" --blobPort "$PORT" --location "$DATA" --skipApiVersionCheck --loose \
        >"$LOG" 2>&1 </dev/null 9>&- &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 150); do
        if answers; then return 0; fi
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            echo "azurite.sh: azurite exited at start; its log ($LOG):" >&2; cat "$LOG" >&2; exit 1
        fi
        sleep 0.2
    done
    echo "azurite.sh: azurite did not answer on $HOST:$PORT within 30 s; its log ($LOG):" >&2; cat "$LOG" >&2
    exit 1
}

stop() {
    [ -f "$PIDFILE" ] || return 0
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        # Azurite closes its service on SIGTERM but node may linger: give it 5 s, then SIGKILL.
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) if answers; then echo "azurite answers on $HOST:$PORT"; else echo "azurite is not running"; exit 1; fi ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
