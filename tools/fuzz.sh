#!/usr/bin/env bash
# Runs one libFuzzer target of fuzz/ for long; see --help.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
usage() {
  cat <<'TEXT'
Usage: tools/fuzz.sh [--build-dir DIR] TARGET [SECONDS] [-- LIBFUZZER_ARGS...]
       tools/fuzz.sh --list
       tools/fuzz.sh --help

Builds the fuzzer fuzz_TARGET if needed and fuzzes for SECONDS (default
600) with the limits the test suite uses: no crash, no sanitizer report,
no input over 10 s (-timeout=10), no RSS over 2 GiB (-rss_limit_mb=2048).
Ends with libFuzzer's final stats and one summary line (runs, coverage,
peak RSS).

  --build-dir DIR  a build tree of the fuzzers: by default build/fuzz,
                   configured with `cmake --preset fuzz` on first use; the
                   fuzz/ tree of a normal build (build/default/fuzz) works too
  --list           the targets, one a line
  LIBFUZZER_ARGS   more libFuzzer options, e.g. -- -max_len=65536 -jobs=2

The seeds come from fuzz/corpus/TARGET/ (never written); what the run
finds goes to build/fuzz-corpus/TARGET/, which the next run starts from.
A failing input is saved in build/fuzz-artifacts/TARGET/ and the run exits
non-zero. Then: minimise it (the command is printed), fix the parser, add
the input to fuzz/regressions/TARGET/ (the test suite replays every file
there) and a unit test next to the parser's others. tests/README.md,
"Fuzzing", says more.
TEXT
}

targets() { sed -n 's/^pyoco_add_fuzzer(\([a-z_]*\) .*/\1/p' "$root/fuzz/CMakeLists.txt"; }

build_dir=""
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --list) targets; exit 0 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --build-dir=*) build_dir=${1#*=}; shift ;;
    -*) echo "fuzz: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 1 ]; then
  usage >&2
  exit 2
fi
target=$1
shift
seconds=600
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  seconds=$1
  shift
fi
[ "${1:-}" = "--" ] && shift
if ! targets | grep -qx "$target"; then
  echo "fuzz: no target '$target'; the targets are: $(targets | tr '\n' ' ')" >&2
  exit 2
fi
case $seconds in
  '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac

cd "$root"
if [ -z "$build_dir" ]; then
  build_dir=build/fuzz
  [ -f "$build_dir/CMakeCache.txt" ] || cmake --preset fuzz
fi
cmake --build "$build_dir" --target "fuzz_$target"
fuzzer="$build_dir/bin/fuzz_$target"

corpus=build/fuzz-corpus/$target
artifacts=build/fuzz-artifacts/$target
log=build/fuzz-logs/$target.log
mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
echo "fuzz: $target for ${seconds}s; corpus $corpus (seeds fuzz/corpus/$target), log $log"

status=0
"$fuzzer" -rss_limit_mb=2048 -timeout=10 -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$@" "$corpus" "fuzz/corpus/$target" 2>&1 | tee "$log" ||
  status=$?

done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
stat() { sed -n "s/^stat::$1:[[:space:]]*//p" "$log" | tail -1; }
echo
if [ "$status" -eq 0 ]; then
  echo "fuzz: $target: $(stat number_of_executed_units) runs in ${seconds}s," \
    "$(stat average_exec_per_sec) exec/s, $(echo "$done_line" | grep -o 'cov: [0-9]*')," \
    "$(echo "$done_line" | grep -o 'ft: [0-9]*'), $(echo "$done_line" | grep -o 'corp: [^ ]*')," \
    "peak RSS $(stat peak_rss_mb) MB, no crash, timeout or OOM"
else
  echo "fuzz: $target FAILED (exit $status); the input is in $artifacts/:" >&2
  ls -t "$artifacts" | head -3 >&2
  echo "fuzz: minimise it with: $fuzzer -minimize_crash=1 -max_total_time=60 " \
    "-exact_artifact_path=$artifacts/minimized $artifacts/<file>" >&2
  echo "fuzz: then fix it and add the input to fuzz/regressions/$target/ (tests/README.md)" >&2
fi
exit "$status"
