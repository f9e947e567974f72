#!/usr/bin/env bash
# A short fuzz run, as the test suite does it (the fuzz_* CTest entries):
#   fuzz/smoke.sh FUZZER FUZZ_DIR SECONDS
# FUZZER is a built fuzz_<target>; FUZZ_DIR is this directory. Replays every
# file of FUZZ_DIR/regressions/<target>/ once, then fuzzes for SECONDS from
# a copy of FUZZ_DIR/corpus/<target>/ (the repository is never written).
# Fails on any crash, sanitizer report, timeout (10 s an input) or RSS over
# 2 GiB; libFuzzer's report, with the input that did it, is in the output.
set -euo pipefail

fuzzer=$1 fuzz_dir=$2 seconds=$3
target=$(basename "$fuzzer")
target=${target#fuzz_}
limits=(-rss_limit_mb=2048 -timeout=10)

work=$(mktemp -d "${TMPDIR:-/tmp}/pyoco-fuzz-$target.XXXXXX")
# What libFuzzer saves of a failure (crash-*, timeout-*, oom-*, leak-*)
# outlives the run, in ./fuzz-artifacts/ (the build directory under CTest).
finish() {
  local status=$?
  if compgen -G "$work/artifacts/*" >/dev/null; then
    mkdir -p fuzz-artifacts
    cp "$work"/artifacts/* fuzz-artifacts/
    echo "smoke: the failing input is kept in $PWD/fuzz-artifacts/" >&2
  fi
  rm -rf "$work"
  return $status
}
trap finish EXIT
mkdir "$work/artifacts" "$work/corpus"

regressions=()
if [ -d "$fuzz_dir/regressions/$target" ]; then
  while IFS= read -r -d '' f; do regressions+=("$f"); done \
    < <(find "$fuzz_dir/regressions/$target" -type f ! -name '*.md' -print0 | sort -z)
fi
if [ ${#regressions[@]} -gt 0 ]; then
  echo "smoke: replaying ${#regressions[@]} regression inputs of $target"
  "$fuzzer" "${limits[@]}" -artifact_prefix="$work/artifacts/" "${regressions[@]}"
fi

cp -R "$fuzz_dir/corpus/$target/." "$work/corpus/"
echo "smoke: fuzzing $target for ${seconds}s from $(find "$work/corpus" -type f | wc -l) seeds"
"$fuzzer" "${limits[@]}" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus"
