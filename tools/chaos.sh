#!/usr/bin/env bash
# The chaos run of docs/reliability.md: a 3-node JetStream cluster on
# loopback (every stream and bucket R3), 2 gateways and 4 workers; 1,000
# runs submitted at a steady rate while the work stream's leader is killed
# (SIGKILL) and restarted, workers are killed, a gateway restarts and a NATS
# node is paused (SIGSTOP) past the AckWait. Then every run must have one
# terminal state and one RunEnd, none a task started after its end, and
# /metrics must equal the runs. Writes bench/results/chaos.json.
#
#   tools/chaos.sh                 1,000 runs over 60 s (about 75 s)
#   tools/chaos.sh --runs N --span SECONDS --seed S
#
# Exit 0 when every check held. The short form (150 runs) is the test
# chaos_test. Builds the default preset first; every process it starts
# (nats-servers, gateways, workers) is stopped when it ends, also on failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cmake --preset default >/dev/null
cmake --build --preset default --target pyoco_chaos
mkdir -p bench/results
exec "$root/build/default/bin/pyoco_chaos" --out "$root/bench/results/chaos.json" "$@"
