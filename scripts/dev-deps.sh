#!/usr/bin/env bash
# Installs what Weft's build and tests need and a fresh machine may lack:
# the wasm32-wasip2 Rust target, the PostgreSQL server binaries, and
# schemathesis (in .deps/venv). Safe to run again: it only installs what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

have_postgres() {
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "dev-deps: adding the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi

if ! have_postgres || ! id postgres >/dev/null 2>&1; then
    echo "dev-deps: installing PostgreSQL (apt-get install -y postgresql postgresql-contrib)"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi

# schemathesis drives the HTTP API from its OpenAPI document with random and
# invalid requests (engine/cli/tests/fuzz.rs); it lives in a venv of ours.
SCHEMATHESIS_VERSION=4.32.5
if [ ! -x .deps/venv/bin/st ] || ! .deps/venv/bin/st --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "dev-deps: installing schemathesis $SCHEMATHESIS_VERSION into .deps/venv"
    if ! python3 -m venv .deps/venv 2>/dev/null; then
        echo "dev-deps: installing python3-venv (apt-get install -y python3-venv)"
        if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .deps/venv
    fi
    .deps/venv/bin/pip install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi
