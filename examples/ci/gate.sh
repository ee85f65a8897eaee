#!/bin/sh
# The gate with curl alone, for pipelines without Python: POST /api/v1/gate until it decides (docs/api.md, "Gate").
#
#   DYNDS_SERVER=https://dynds.example DYNDS_TOKEN=... \
#     sh examples/ci/gate.sh spec.json --require worth-it --min-seeds 3 --max-seeds 5 [--max-acc-drop Y]
#
# SPEC is a JSON file (the body of POST /jobs's "spec"). Each ask is idempotent: the server submits a planned seed
# only once and reuses finished ones. Exit codes, as `dynds submit --require`: 0 pass, 1 fail, 2 error (bad spec
# or flags, server unreachable, token refused), 3 inconclusive (max seeds reached), 4 could not decide (a seed's
# job failed, seeds on unlike hardware, or DYNDS_GATE_TIMEOUT_S passed). Needs curl and a POSIX sh; the answer is
# read with sed (the API writes compact JSON). DYNDS_POLL_S: seconds between asks (default 10).
set -eu

usage() { echo "usage: gate.sh SPEC.json --require worth-it|no-worse [--min-seeds N] [--max-seeds N] [--max-acc-drop Y]" >&2; exit 2; }
[ $# -ge 1 ] || usage
spec=$1; shift
require=""; min_seeds=3; max_seeds=5; drop=""
while [ $# -gt 0 ]; do
  case $1 in
    --require) require=${2:-}; shift 2 ;;
    --min-seeds) min_seeds=${2:-}; shift 2 ;;
    --max-seeds) max_seeds=${2:-}; shift 2 ;;
    --max-acc-drop) drop=",\"max_acc_drop\":${2:-}"; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$require" ] || usage
[ -r "$spec" ] || { echo "error: cannot read the spec $spec" >&2; exit 2; }

url="${DYNDS_SERVER:-http://127.0.0.1:8000}"
url="${url%/}"; url="${url%/api/v1}/api/v1/gate"
poll=${DYNDS_POLL_S:-10}
timeout=${DYNDS_GATE_TIMEOUT_S:-0}
answer=$(mktemp); body=$(mktemp)
trap 'rm -f "$answer" "$body"' EXIT
{ printf '{"spec":'; cat "$spec"; printf ',"require":"%s","min_seeds":%s,"max_seeds":%s%s}' "$require" "$min_seeds" "$max_seeds" "$drop"; } > "$body"

field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$answer"; }
started=$(date +%s); last=""; down_since=""
while :; do
  set -- -s -o "$answer" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "@$body"
  [ -z "${DYNDS_TOKEN:-}" ] || set -- "$@" -H "Authorization: Bearer $DYNDS_TOKEN"
  code=$(curl "$@" "$url" || true)
  case $code in
    200) down_since="" ;;
    000|502|503|504)  # a restarting server or a proxy: retry for up to DYNDS_RETRY_FOR_S (120 s) in a row
      now=$(date +%s); down_since=${down_since:-$now}
      if [ $((now - down_since)) -ge "${DYNDS_RETRY_FOR_S:-120}" ]; then echo "error: cannot reach $url (HTTP $code)" >&2; exit 2; fi
      sleep 2; continue ;;
    *) echo "error: $url answered HTTP $code:" >&2; cat "$answer" >&2; echo >&2; exit 2 ;;
  esac
  decision=$(field decision); reason=$(field reason)
  [ "$reason" = "$last" ] || echo "gate $decision: $reason"
  last=$reason
  case $decision in
    pass) exit 0 ;;
    fail) exit 1 ;;
    inconclusive) exit 3 ;;
    error) exit 4 ;;
    undecided) ;;
    *) echo "error: no decision in the answer:" >&2; cat "$answer" >&2; exit 2 ;;
  esac
  if [ "$timeout" -gt 0 ] && [ $(($(date +%s) - started)) -ge "$timeout" ]; then echo "error: no decision within $timeout s" >&2; exit 4; fi
  sleep "$poll"
done
