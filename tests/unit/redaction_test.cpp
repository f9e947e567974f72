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
