#!/usr/bin/env bash
# Creates (once) and updates the project's virtual environment in .venv.
# Sourced by scripts/serve.sh and scripts/test.sh; safe to run again (it skips work already done).
# Usage: bash scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "dynds needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

# The service's extra always (the quick start runs it) and the docs' (it serves them); --test adds what the tests use.
extras="[service,docs]"
[ "${1:-}" = "--test" ] && extras="[service,docs,test]"
# Reinstall only when the dependency list changed (torch alone is several GB to unpack).
stamp=".venv/.dynds-installed$extras"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip 2>/dev/null || true
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".$extras"
    echo "$want" > "$stamp"
fi
