#!/usr/bin/env bash
# Builds the documentation site into site/ (MkDocs Material; warnings are errors, as in CI). `dynds serve`
# serves it at /manual/. Extra arguments go to `mkdocs build`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/mkdocs ] || bash scripts/setup.sh
export NO_MKDOCS_2_WARNING=1  # Material's notice about its successor, not about these docs
exec .venv/bin/mkdocs build --strict --quiet "$@"
