#!/usr/bin/env bash
# Quick start: set up and run the service with its embedded defaults (SQLite, in-process executor)
# at http://127.0.0.1:8000 (dashboard at /, API at /api/v1, OpenAPI at /docs, documentation at /manual/).
# Extra arguments go to `dynds serve`, e.g. bash scripts/serve.sh --port 9000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# The shared CIFAR-10 archive (if this checkout sits beside shared/) is readable by jobs submitted over HTTP.
if [ -z "${DYNDS_DATA_DIRS:-}" ] && [ -d ../shared/data ]; then
    export DYNDS_DATA_DIRS="$(cd ../shared/data && pwd)"
fi
# The documentation, served at /manual/ (a failed build leaves the service running, saying so).
bash scripts/docs.sh || echo "the documentation did not build (bash scripts/docs.sh says why); the service runs without it" >&2
exec .venv/bin/dynds serve "$@"
