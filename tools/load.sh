#!/usr/bin/env bash
# HTTP load on the gateway with wrk, against a minimal Beast server of the
# same shape (the ceiling) in the same run: POST /runs, GET /runs/{id},
# GET /runs?limit=50, and the reads again with 200 SSE watchers held. Writes
# bench/results/load.{json,md} (see docs/performance.md, "HTTP load (wrk)").
#
#   tools/load.sh            10 s per wrk run, 32 connections (about 3 minutes)
#   tools/load.sh --smoke    1 s per wrk run, 8 connections (about 20 s);
#                            writes build/default/bench/results-smoke/
#
# Other arguments go to pyoco_load_bench (--seconds N, --connections C,
# --watchers S, --workers W, --out DIR). The program starts and stops its
# own nats-server (free loopback port), gateway, workers and ceiling, also
# when it fails. Needs wrk (tools/setup.sh installs it). Builds the default
# preset first; run it on an otherwise idle machine.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v wrk >/dev/null; then
  echo "load: wrk is missing: run tools/setup.sh (Debian's wrk package)" >&2
  exit 1
fi

cmake --preset default >/dev/null
cmake --build --preset default --target pyoco_load_bench

out="$root/bench/results"
for arg in "$@"; do
  if [ "$arg" = "--smoke" ]; then out="$root/build/default/bench/results-smoke"; fi
done
exec "$root/build/default/bin/pyoco_load_bench" --out "$out" "$@"
