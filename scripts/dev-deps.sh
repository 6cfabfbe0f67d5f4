#!/usr/bin/env bash
# Installs what Weft's build and tests need and a fresh machine may lack:
# the wasm32-wasip2 Rust target and the PostgreSQL server binaries.
# Safe to run again: it only installs what is missing.
set -euo pipefail

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
