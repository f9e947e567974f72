#include <pyoco/core/value.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

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

// A loop collecting one output per iteration fills an array from as many
// arenas (each task's own): each is kept alive once however often it is
// pushed, past the few an arena scans (then it looks them up by address).
BOOST_AUTO_TEST_CASE(an_array_of_values_from_many_arenas_keeps_each_alive) {
  constexpr int kArenas = 1000;
  Value built;
  {
    std::vector<Value> parts;
    for (int i = 0; i < kArenas; ++i) parts.push_back(json(std::to_string(i).c_str()));
    ValueBuilder b;
    ValueNode* arr = b.arena().make_array();
    for (const Value& v : parts) BOOST_TEST_REQUIRE(Arena::push(arr, v.node()));
    // Again, backwards: every arena is already kept.
    for (auto v = parts.rbegin(); v != parts.rend(); ++v) {
      BOOST_TEST_REQUIRE(Arena::push(arr, v->node()));
    }
    b.arena().seal();
    built = b.wrap(arr);
  }
  BOOST_TEST_REQUIRE(built.size() == 2u * kArenas);
  for (int i = 0; i < kArenas; ++i) {
    BOOST_TEST_REQUIRE(built.at(i).as_int() == i);
    BOOST_TEST_REQUIRE(built.at(2 * kArenas - 1 - i).as_int() == i);
  }
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

// A summary of a large value writes only its beginning, and that beginning
// is exactly the whole text's: for strings (escapes, UTF-8 cut anywhere),
// bytes (base64), long lists and nested objects.
BOOST_AUTO_TEST_CASE(json_text_cut_short_is_the_whole_texts_beginning) {
  std::string utf8;
  for (int i = 0; i < 100; ++i) utf8 += "\xc3\xa9\xf0\x9f\x90\xb0x";  // é🐰x
  std::string escapes;
  for (int i = 0; i < 100; ++i) escapes += "a\"\\\n\x01";
  ValueBuilder b;
  std::vector<Value> values;
  values.push_back(b.wrap(b.arena().make_string(std::string(5000, 'a'))));
  values.push_back(b.wrap(b.arena().make_string(utf8)));
  values.push_back(b.wrap(b.arena().make_string(escapes)));
  for (std::size_t n : {100u, 101u, 102u, 1000u}) {
    const std::string raw(n, '\x07');
    values.push_back(b.wrap(b.arena().make_bytes(raw.data(), raw.size())));
  }
  std::string big_array = "[", nested = "{";
  for (int i = 0; i < 1000; ++i) big_array += (i ? "," : "") + std::to_string(i * 1000003);
  for (int i = 0; i < 50; ++i) {
    nested += (i ? "," : "") + std::string("\"key-") + std::string(30, char('a' + i % 26)) +
              "\": {\"x\": [1.5, true, null, \"" + std::string(20, 'y') + "\"]}";
  }
  values.push_back(from_json(boost::json::parse(big_array + "]")));
  values.push_back(from_json(boost::json::parse(nested + "}")));
  values.push_back(from_json(boost::json::parse(R"({"small": [1, 2]})")));
  for (const Value& v : values) {
    const std::string whole = to_json_text(v);
    for (std::size_t n : {0u, 1u, 5u, 50u, 200u, 201u, 1000u, 100000u}) {
      BOOST_TEST_CONTEXT(whole.substr(0, 40) << " cut at " << n) {
        BOOST_TEST(to_json_text(v, n) == whole.substr(0, n));
      }
    }
  }
}

// An object's members from JSON are added, not looked up first (its keys
// are unique): 120,000 keys (a params object a client may send) took 73 s
// at O(n^2) and stalled a worker past its job's ack wait. By hand, this
// case: under 0.1 s.
BOOST_AUTO_TEST_CASE(a_json_object_of_many_keys_converts_whole) {
  boost::json::object o;
  for (int i = 0; i < 200000; ++i) o["k" + std::to_string(i)] = i;
  const Value v = from_json(o);
  BOOST_TEST(v.size() == 200000u);
  BOOST_TEST(v.find("k199999").as_int() == 199999);
  BOOST_TEST(v.find("k0").as_int() == 0);
}

// A JSON parser rounds 12345678901234567890 to the double
// 12345678901234567168; params readers refuse such an integer instead.
BOOST_AUTO_TEST_CASE(an_integer_past_64_bits_is_found_in_json_text) {
  BOOST_TEST(oversized_json_integer(R"({"id": 12345678901234567890})") == "12345678901234567890");
  BOOST_TEST(oversized_json_integer("[1, -9223372036854775809]") == "-9223372036854775809");
  BOOST_TEST(oversized_json_integer("99999999999999999999") == "99999999999999999999");
  // the largest integers, doubles as written, and digits in strings pass
  BOOST_TEST(oversized_json_integer("[9223372036854775807, -9223372036854775808]").empty());
  BOOST_TEST(oversized_json_integer("[1e30, 12345678901234567890.0, true, null]").empty());
  BOOST_TEST(
      oversized_json_integer(R"({"12345678901234567890": "a \" 12345678901234567890"})").empty());
}
