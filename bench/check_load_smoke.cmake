# The load_bench_smoke test: runs the HTTP load benchmark at smoke size
# (1 s per wrk run) against its own nats-server, gateway and ceiling, and
# checks that it exits 0 (it exits 1 on any non-2xx answer, socket error,
# SSE watcher not held or not told of its run's end, or a gateway that did
# not answer) and writes the figures docs/performance.md reads. No timing
# is checked: benchmarks measure, tests assert.
#   cmake -DBENCH=<pyoco_load_bench> -DOUT=<dir> -P check_load_smoke.cmake
file(REMOVE_RECURSE "${OUT}")
execute_process(COMMAND "${BENCH}" --smoke --out "${OUT}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pyoco_load_bench --smoke exited ${rc}:\n${err}\n${out}")
endif()
file(READ "${OUT}/load.json" json)
foreach(path "routes;0;gateway;requests_per_s" "routes;2;ceiling;p99_ms" "routes;2;ratio"
        "post_queue;runs_posted" "sse;gateway;held" "sse;gateway;release_to_watcher_end;p99_ms"
        "sse;routes;1;ratio" "sse;ceiling;held")
  string(JSON value ERROR_VARIABLE error GET "${json}" ${path})
  if(error)
    message(FATAL_ERROR "load.json: ${error}")
  endif()
endforeach()
string(JSON held GET "${json}" "sse" "gateway" "held")
string(JSON watchers GET "${json}" "sse" "gateway" "watchers")
if(NOT held EQUAL watchers)
  message(FATAL_ERROR "load.json: ${held} of ${watchers} SSE watchers held")
endif()
# Watches share the gateway's one subscription to every run's events: a
# consumer each (the old way) would make as many as there are watchers.
string(JSON made GET "${json}" "sse" "gateway" "consumers_made")
math(EXPR half "${watchers} / 2")
if(NOT made LESS half)
  message(FATAL_ERROR "load.json: ${made} consumers made for ${watchers} SSE watchers")
endif()
