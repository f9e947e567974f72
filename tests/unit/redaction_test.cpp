// What a Redactor masks: every occurrence of a secret, in text and inside
// the strings of a JSON document or a Value, never the document's shape.
#include <pyoco/trace/redaction.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

using pyoco::trace::Redactor;

BOOST_AUTO_TEST_CASE(every_occurrence_in_text_is_masked) {
  const Redactor r({"hunter22", "hunter2222"});
  BOOST_TEST(r.apply("pw=hunter22; again hunter22!") == "pw=***; again ***!");
  // The longer secret first: it is not left half visible.
  BOOST_TEST(r.apply("hunter2222") == "***");
  BOOST_TEST(r.apply("nothing here") == "nothing here");
  BOOST_TEST(!r.empty());
  BOOST_TEST(Redactor({}).empty());
}

BOOST_AUTO_TEST_CASE(json_keeps_its_shape) {
  const Redactor r({"1234", "p\"w\\d"});
  // Numbers that contain the secret's digits stay numbers; strings and keys are masked.
  BOOST_TEST(r.apply_json(R"({"n":12345,"s":"a1234b","1234":true,"q":"p\"w\\d"})") ==
             R"({"n":12345,"s":"a***b","***":true,"q":"***"})");
  // Not JSON: masked as text.
  BOOST_TEST(r.apply_json("not json 1234") == "not json ***");
  // Keys that mask alike are both kept.
  BOOST_TEST(r.apply_json(R"({"1234":1,"p\"w\\d":2})") == R"({"***":1,"***#2":2})");
}

BOOST_AUTO_TEST_CASE(values_are_masked_inside) {
  const Redactor r({"s3cret"});
  const pyoco::core::Value v =
      pyoco::core::from_json(boost::json::parse(R"({"a":["x s3cret y",7],"b":{"s3cret":null}})"));
  BOOST_TEST(pyoco::core::to_json_text(r.apply(v)) == R"({"a":["x *** y",7],"b":{"***":null}})");
  BOOST_TEST(r.apply(pyoco::core::Value()).is_null());
}

BOOST_AUTO_TEST_CASE(a_secret_too_short_to_mask_is_refused) {
  BOOST_CHECK_THROW(Redactor({"abc"}), std::invalid_argument);
  BOOST_CHECK_NO_THROW(Redactor({"abcd"}));
}

namespace {

// Some run of `min` or more bytes of `secret` that `text` holds, or empty.
std::string part_of_secret_in(const std::string& text, const std::string& secret, std::size_t min) {
  for (std::size_t i = 0; i + min <= secret.size(); ++i) {
    if (text.find(secret.substr(i, min)) != std::string::npos) return secret.substr(i, min);
  }
  return {};
}

// 400 bytes no ordinary text shares 8 of.
std::string long_secret() {
  std::string s;
  for (int i = 0; s.size() < 400; ++i) s += "Q" + std::to_string(i * 7919 % 10007) + "zX";
  return s.substr(0, 400);
}

}  // namespace

// A text cut before it is masked (std/shell's last 400 bytes of stderr, a
// plugin's own cut) holds part of a secret: that part is masked too.
BOOST_AUTO_TEST_CASE(what_a_cut_left_of_a_secret_is_masked) {
  const std::string secret = long_secret();
  const Redactor r({secret});
  for (std::size_t cut : {1u, 10u, 100u, 199u, 396u}) {
    // The secret's end after a marked cut, its beginning at a text's end.
    const std::string tail = "command exited 1: ..." + secret.substr(cut) + "\n";
    const std::string head = "summary: \"" + secret.substr(0, secret.size() - cut);
    for (const std::string& text : {tail, head, tail + head}) {
      const std::string masked = r.apply(text);
      BOOST_TEST(part_of_secret_in(masked, secret, 4).empty(), masked);
      BOOST_TEST(masked.find("***") != std::string::npos, masked);
    }
  }
  // 8 bytes or more are masked wherever they are, a cut marked or not.
  BOOST_TEST(r.apply("command exited 1: " + secret.substr(10)) == "command exited 1: ***");
  BOOST_TEST(r.apply("a " + secret.substr(100, 50) + " b") == "a *** b");  // cut at both ends
  // Text around it stays, and ordinary text is left alone.
  BOOST_TEST(r.apply("x" + secret.substr(0, 50) + "...") == "x***...");
  BOOST_TEST(r.apply("nothing of it here") == "nothing of it here");
}

BOOST_AUTO_TEST_CASE(a_short_secret_cut_at_a_text_s_edge_is_masked) {
  const Redactor r({"hunter2-abc"});  // 11 bytes
  // 4 bytes or more of its end starting a text, or of its beginning ending one...
  BOOST_TEST(r.apply("r2-abc: denied") == "***: denied");
  BOOST_TEST(r.apply("token hunt") == "token ***");
  // ...or on either side of the "..." that marks a cut...
  BOOST_TEST(r.apply("command exited 1: ...-abc denied") == "command exited 1: ...*** denied");
  BOOST_TEST(r.apply("pw=hunter...") == "pw=***...");
  // ...and 8 or more anywhere.
  BOOST_TEST(r.apply("see hunter2-a there") == "see *** there");
  // Less, or away from a cut, is ordinary text.
  BOOST_TEST(r.apply("abc: hunting") == "abc: hunting");
  BOOST_TEST(r.apply("abc") == "abc");
}
