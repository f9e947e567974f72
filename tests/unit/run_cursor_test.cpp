// GET /runs's cursor gives back exactly the time it was made from: a cursor
// a unit in the last place late repeats a run on the next page.
#include <pyoco/server/run_index.hpp>

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <random>

BOOST_AUTO_TEST_CASE(a_cursor_round_trips_every_time_exactly) {
  std::mt19937_64 gen(42);
  std::uniform_int_distribution<std::int64_t> ns(1'700'000'000'000'000'000LL,
                                                 1'900'000'000'000'000'000LL);
  int inexact = 0;
  for (int i = 0; i < 200000; ++i) {
    const double at = static_cast<double>(ns(gen)) / 1e9;  // as the index stores stream times
    const auto back = pyoco::server::decode_cursor(pyoco::server::encode_cursor(at, "run-1"));
    BOOST_REQUIRE(back);
    if (back->first != at) ++inexact;
    BOOST_REQUIRE(back->second == "run-1");
  }
  BOOST_TEST(inexact == 0);
}

BOOST_AUTO_TEST_CASE(a_cursor_that_is_not_one_is_refused) {
  BOOST_TEST(!pyoco::server::decode_cursor("nonsense"));
  BOOST_TEST(!pyoco::server::decode_cursor(""));
  BOOST_TEST(!pyoco::server::decode_cursor("eyJ1IjoxfQ"));  // {"u":1}: no run id
}
