# The cluster_bench_smoke test: runs the cluster benchmark at smoke size
# (one worker, 100 runs) against its own nats-server and checks that it
# exits 0 and writes the figures docs/performance.md reads. No timing is
# checked: benchmarks measure, tests assert.
#   cmake -DBENCH=<pyoco_cluster_bench> -DOUT=<dir> -P check_cluster_smoke.cmake
file(REMOVE_RECURSE "${OUT}")
execute_process(COMMAND "${BENCH}" --smoke --out "${OUT}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pyoco_cluster_bench --smoke exited ${rc}:\n${err}\n${out}")
endif()
file(READ "${OUT}/cluster.json" json)
foreach(path "mode" "baseline;runs_per_s" "setups;0;runs_per_s" "setups;0;idle_post;p50_ms"
        "setups;0;idle_submit_to_completed;p99_ms" "setups;0;cpu_ms_per_run;nats_server"
        "auth;routes;0;ratio" "auth;routes;1;api_key_rps")
  string(JSON value ERROR_VARIABLE error GET "${json}" ${path})
  if(error)
    message(FATAL_ERROR "cluster.json: ${error}")
  endif()
endforeach()
if(NOT EXISTS "${OUT}/cluster.md")
  message(FATAL_ERROR "pyoco_cluster_bench --smoke wrote no ${OUT}/cluster.md")
endif()
