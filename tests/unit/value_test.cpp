#include <pyoco/core/value.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

using namespace pyoco::core;

namespace {
Value json(const char* text) { return from_json(boost::json::parse(text)); }
}  // namespace

BOOST_AUTO_TEST_CASE(json_round_trips) {
  const char* text = R"({"a":1,"b":[true,null,2.5,"x"],"c":{"d":"e"}})";
  BOOST_TEST(to_json_text(json(text)) == text);
}

BOOST_AUTO_TEST_CASE(object_keeps_insertion_order_and_finds_keys) {
  const Value v = json(R"({"z":1,"a":2})");
  BOOST_TEST(v.size() == 2u);
  BOOST_TEST(v.member(0).first == "z");
  BOOST_TEST(v.find("a").as_int() == 2);
  BOOST_TEST(v.find("missing").is_null());
  BOOST_TEST(v.at(0).is_null());  // not an array
}

BOOST_AUTO_TEST_CASE(a_value_keeps_its_arena_alive) {
  Value inner;
  {
    const Value outer = json(R"({"list":[1,2,3]})");
    inner = outer.find("list");
  }
  BOOST_TEST(inner.size() == 3u);
  BOOST_TEST(inner.at(2).as_int() == 3);
}

BOOST_AUTO_TEST_CASE(containers_refer_to_other_arenas_and_keep_them_alive) {
  Value built;
  {
    const Value other = json(R"("shared")");
    ValueBuilder b;
    ValueNode* arr = b.arena().make_array();
    BOOST_TEST(Arena::push(arr, other.node()));
    built = b.wrap(arr);
  }
  BOOST_TEST(built.at(0).as_string() == "shared");
}

BOOST_AUTO_TEST_CASE(sealed_arenas_refuse_changes) {
  ValueBuilder b;
  ValueNode* obj = b.arena().make_object();
  BOOST_TEST(Arena::set(obj, "k", b.arena().make_int(1)));
  b.arena().seal();
  BOOST_TEST(!Arena::set(obj, "k", b.arena().make_int(2)));
  BOOST_TEST(b.wrap(obj).find("k").as_int() == 1);
}

BOOST_AUTO_TEST_CASE(set_replaces_an_existing_key) {
  ValueBuilder b;
  ValueNode* obj = b.arena().make_object();
  Arena::set(obj, "k", b.arena().make_int(1));
  Arena::set(obj, "k", b.arena().make_int(2));
  BOOST_TEST(b.wrap(obj).size() == 1u);
  BOOST_TEST(b.wrap(obj).find("k").as_int() == 2);
}

BOOST_AUTO_TEST_CASE(large_values_grow_past_the_inline_buffer) {
  ValueBuilder b;
  ValueNode* arr = b.arena().make_array();
  for (int i = 0; i < 10000; ++i) Arena::push(arr, b.arena().make_int(i));
  const std::string big(100000, 'x');
  Arena::push(arr, b.arena().make_string(big));
  const Value v = b.wrap(arr);
  BOOST_TEST(v.size() == 10001u);
  BOOST_TEST(v.at(9999).as_int() == 9999);
  BOOST_TEST(v.at(10000).as_string() == big);
}

BOOST_AUTO_TEST_CASE(bytes_become_base64_in_json) {
  ValueBuilder b;
  const Value v = b.wrap(b.arena().make_bytes("hi!\xff", 4));
  BOOST_TEST(to_json_text(v) == R"("aGkh/w==")");
}

BOOST_AUTO_TEST_CASE(equality_is_deep_and_numeric) {
  BOOST_TEST((json(R"({"a":[1,2]})") == json(R"({"a":[1.0,2]})")));
  BOOST_TEST(!(json(R"({"a":[1,2]})") == json(R"({"a":[2,1]})")));
  BOOST_TEST(!(json("1") == json(R"("1")")));
}
