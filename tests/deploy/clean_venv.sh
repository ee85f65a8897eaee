#!/usr/bin/env bash
# The clean installs a user does, outside the checkout: first the library alone (`pip install .`, checked
# here: `dynds train` runs, the service's commands say which extra they need), then the service
# (`pip install '.[service]'`), which the deployment tests run. No test extras. Prints the venv's path.
#
#   venv=$(bash tests/deploy/clean_venv.sh)      # DYNDS_CLEAN_VENV=/path to choose where
#
# The dependencies are installed once per pyproject.toml (torch is several GB to unpack): while its hash is
# unchanged only the package itself is reinstalled (--no-deps), from a copy of the working tree's files
# (tracked and untracked, not ignored), so the build never writes into the checkout. A changed
# pyproject.toml rebuilds the venv from scratch: a dependency dropped from the list is gone there too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PYTHON=${PYTHON:-python3}
venv=${DYNDS_CLEAN_VENV:-/tmp/dynds-clean-venv-$(pwd | sha256sum | cut -c1-8)}

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -C "$src" -xf -

want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
stamp="$venv/.dynds-clean-install"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "clean venv: installing the library into $venv (pip install .)" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet -c constraints.txt "$src" >&2
    "$venv/bin/python" -m pip check >&2
    (cd "$src" && OMP_NUM_THREADS=1 "$venv/bin/dynds" train examples/synthetic.yaml --epochs 1 --quiet >/dev/null) >&2
    echo "clean venv: the library alone trains (dynds train examples/synthetic.yaml)" >&2
    if out=$("$venv/bin/dynds" serve 2>&1); then
        echo "clean venv: dynds serve started without the service extra" >&2; exit 1
    fi
    grep -qF "pip install 'dynds[service]'" <<<"$out" || { echo "dynds serve without the extra said: $out" >&2; exit 1; }
    echo "clean venv: without the extra, dynds serve says: ${out#error: }" >&2
    echo "clean venv: adding the service (pip install '.[service]')" >&2
    "$venv/bin/python" -m pip install --quiet -c constraints.txt "$src[service]" >&2
    echo "$want" > "$stamp"
else
    echo "clean venv: dependencies unchanged, reinstalling dynds only (--no-deps) in $venv" >&2
    "$venv/bin/python" -m pip install --quiet --no-deps --force-reinstall "$src" >&2
fi
"$venv/bin/python" -m pip check >&2
# pip check ignores extras (celery[redis] -> kombu[redis] -> packaging): import what the service loads.
(cd / && "$venv/bin/python" -c 'import dynds.cli, app.main, worker.celery_app, worker.runner, kombu.transport.redis') >&2
# The point of this venv: nothing the test extras bring may be in it.
if "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
    echo "clean venv $venv has pytest installed: it is not a plain install" >&2
    exit 1
fi
echo "$venv"
