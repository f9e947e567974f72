// examples/embed builds and runs: the C++ flow API end to end.
#include <boost/test/unit_test.hpp>

#include "process.hpp"

using namespace pyoco::testing;

BOOST_AUTO_TEST_CASE(the_embedding_example_runs_the_seed_flow) {
  const ProcessResult r = run_process({PYOCO_EMBED_EXE}, {.unset_env = {"PYOCO_PLUGIN_PATH"}});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  for (const char* line :
       {"🐇 pyoco > start flow=hello_embed run_id=", "🐰 Fetching data...", "🥕 Processing: carrot",
        "📣 adding emphasis", "✨ Saved: CARROT!", "🥕 done flow=hello_embed", "status: COMPLETED",
        "  count  SUCCEEDED  6", "  save_result  SUCCEEDED  \"CARROT!\""}) {
    BOOST_TEST(r.out.find(line) != std::string::npos, "missing: " << line << "\n" << r.out);
  }
}
