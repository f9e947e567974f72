#!/usr/bin/env bash
# The soak run of docs/reliability.md: a steady load (20 runs/s submitted,
# 20 reads/s of records and the run list) through 2 gateways to 2 workers
# on a 3-node JetStream cluster (R3) for MINUTES, sampled every 30 s: each
# process's RSS and open descriptors, the work consumer's lag, run latency
# (submit to its end as GET /events tells it) and submit latency
# percentiles. Writes bench/results/soak.json.
#
#   tools/soak.sh MINUTES [--interval SECONDS] [--rate RUNS_PER_S]
#
# Exit 0 when no pyoco process grew (RSS by more than 10% and 4 MiB, or
# descriptors by more than 4, from the sample after warm-up to the last), no
# request failed and every run ended. Run it on an otherwise idle machine.
set -euo pipefail

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "usage: tools/soak.sh MINUTES [--interval SECONDS] [--rate RUNS_PER_S]" >&2
  exit 2
fi
minutes="$1"
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cmake --preset default >/dev/null
cmake --build --preset default --target pyoco_soak
mkdir -p bench/results
exec "$root/build/default/bin/pyoco_soak" --minutes "$minutes" --out "$root/bench/results/soak.json" "$@"
