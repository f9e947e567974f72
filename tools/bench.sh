#!/usr/bin/env bash
# Runs pyoco's benchmark suite and writes bench/results/latest.json and
# bench/results/latest.md (see docs/performance.md).
#
#   tools/bench.sh            full sizes (1k, 10k, 100k nodes; takes minutes)
#   tools/bench.sh --cluster  cluster mode end to end (about 3 minutes):
#                             runs/s and latencies through NATS, gateway, workers
#   tools/bench.sh --smoke    tiny sizes, one repetition (a second or so);
#                             writes build/default/bench/results-smoke/ so the
#                             committed results stay full-size
#
# Any other arguments go to pyoco_bench (e.g. --out DIR, --reps N). Builds
# the default preset (RelWithDebInfo) first. Run it on an otherwise idle
# machine: the figures are wall times.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cmake --preset default >/dev/null

# Cluster mode end to end (nats-server, gateway, workers): bench/results/cluster.{json,md}.
if [ "${1:-}" = "--cluster" ]; then
  shift
  cmake --build --preset default --target pyoco_cluster_bench
  exec "$root/build/default/bin/pyoco_cluster_bench" --out "$root/bench/results" "$@"
fi

cmake --build --preset default --target pyoco_bench

out="$root/bench/results"
for arg in "$@"; do
  if [ "$arg" = "--smoke" ]; then out="$root/build/default/bench/results-smoke"; fi
done
exec "$root/build/default/bin/pyoco_bench" --out "$out" "$@"
