#!/usr/bin/env bash
# Refresh the vendored chart library from the pinned npm lockfile.
# The copied files are committed: the dashboard runs offline and needs no npm at run time.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
mkdir -p static/vendor
# no source map is shipped: drop the pointer so browsers do not ask the server for it
sed "/sourceMappingURL=/d" node_modules/chart.js/dist/chart.umd.min.js > static/vendor/chart.umd.min.js
cp node_modules/chart.js/LICENSE.md static/vendor/chart.js.LICENSE.md
version=$(node -p 'require("./node_modules/chart.js/package.json").version')
echo "vendored chart.js ${version} into static/vendor/"
