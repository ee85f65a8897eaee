#!/usr/bin/env bash
# Quick start: set up and pass the tests. Installs what the tests need and starts the services they
# talk to (PostgreSQL, Redis, headless Chromium), then runs pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --test

apt_updated=""
apt_install() {
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL on 127.0.0.1:5432 (trust auth for the local postgres user)
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    version=$(ls /etc/postgresql | sort -n | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    pg_isready -h 127.0.0.1 -p 5432
fi

# Redis on 127.0.0.1:6379 (the tests use database 15)
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    command -v redis-server >/dev/null || apt_install redis-server
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/dynds-tests.log
    for _ in $(seq 30); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.5; done
    redis-cli ping
fi

# Debian's Chromium for the dashboard's browser tests (Playwright cannot download browsers here)
[ -x /usr/bin/chromium ] || apt_install chromium

# Generated clients (tests/app/test_generated_clients.py): openapi-generator's jar needs Java, the TypeScript
# client is type-checked by tsc, installed once into a cache outside the repo (the dashboard needs no build step).
command -v java >/dev/null || apt_install default-jre-headless
tsc_cache="$HOME/.cache/dynds-test-npm"
[ -x "$tsc_cache/node_modules/.bin/tsc" ] || npm install --silent --no-audit --no-fund --prefix "$tsc_cache" typescript@5

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec .venv/bin/pytest "$@"
