// Text on its way to a terminal or to JSON (core/text.hpp): what is UTF-8,
// what replaces what is not, and what a console line shows.
#include <pyoco/core/text.hpp>

#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

using namespace pyoco::core;

BOOST_AUTO_TEST_CASE(utf8_is_told_from_what_only_looks_like_it) {
  struct Case {
    std::string text;
    std::size_t bad;  // npos: valid
  };
  const std::size_t ok = std::string::npos;
  const std::vector<Case> table = {
      {"", ok},
      {"plain ascii", ok},
      {"carrot \xF0\x9F\xA5\x95 and caf\xC3\xA9", ok},  // 🥕, é
      {"\xEF\xBF\xBD", ok},                             // U+FFFD itself
      {"a\xFF", 1},                                     // never valid
      {"\xC0\xAF", 0},                                  // overlong '/'
      {"\xE0\x80\xAF", 0},                              // overlong, three bytes
      {"x\xED\xA0\x80", 1},                             // a surrogate
      {"\xF4\x90\x80\x80", 0},                          // past U+10FFFF
      {"ab\xE2\x82", 2},                                // cut short
      {"\x80", 0},                                      // a lone continuation
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.text) { BOOST_TEST(invalid_utf8_at(c.text) == c.bad); }
  }
}

BOOST_AUTO_TEST_CASE(bytes_that_are_not_utf8_become_replacement_characters) {
  BOOST_TEST(valid_utf8("caf\xC3\xA9") == "caf\xC3\xA9");
  BOOST_TEST(valid_utf8("a\xFF"
                        "b") ==
             "a\xEF\xBF\xBD"
             "b");
  BOOST_TEST(valid_utf8("\xE2\x82") == "\xEF\xBF\xBD\xEF\xBF\xBD");  // each bad byte
  BOOST_TEST(invalid_utf8_at(valid_utf8("\xC0\xAF\xED\xA0\x80\xFF")) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_console_line_shows_control_characters_escaped) {
  BOOST_TEST(printable("node=a") == "node=a");
  BOOST_TEST(printable("two\nlines") == "two\\nlines");
  BOOST_TEST(printable("back\rover") == "back\\rover");
  BOOST_TEST(printable("tab\tstays") == "tab\tstays");
  BOOST_TEST(printable("\x1b[2Jclear") == "\\x1b[2Jclear");
  BOOST_TEST(printable(std::string("nul\0here", 8)) == "nul\\x00here");
  BOOST_TEST(printable("del\x7f") == "del\\x7f");
  BOOST_TEST(printable("c1 \xC2\x9B") == "c1 \\xc2\\x9b");  // CSI, the 8-bit escape
  BOOST_TEST(printable("caf\xC3\xA9 \xF0\x9F\xA5\x95") == "caf\xC3\xA9 \xF0\x9F\xA5\x95");
  BOOST_TEST(printable("bad\xFF") == "bad\\xff");
  // A right-to-left override reorders the rest of the line: escaped.
  BOOST_TEST(printable("evil\xE2\x80\xAE"
                       "flow") == "evil\\xe2\\x80\\xaeflow");
  BOOST_TEST(printable("iso\xE2\x81\xA6x") == "iso\\xe2\\x81\\xa6x");
  BOOST_TEST(printable("dash \xE2\x80\x94 ok") == "dash \xE2\x80\x94 ok");  // an em dash is text
}

// Long runs are checked and copied eight bytes at a time: a byte that must
// be escaped (or that is not UTF-8) is found wherever it lies in a word,
// and in the tail shorter than one.
BOOST_AUTO_TEST_CASE(json_strings_are_escaped_at_every_place_in_a_word) {
  const std::vector<std::pair<std::string, std::string>> specials = {
      {"\"", "\\\""},
      {"\\", "\\\\"},
      {"\n", "\\n"},
      {std::string(1, '\0'), "\\u0000"},
      {"\x1f", "\\u001f"},
      {"\x7f", "\\u007f"},
      {" ", " "},
      {"\xC3\xA9", "\xC3\xA9"},
      {"\xFF", "\xEF\xBF\xBD"}};
  for (const auto& [raw, escaped] : specials) {
    for (std::size_t before = 0; before < 20; ++before) {
      for (const std::size_t after : {0u, 1u, 7u, 8u, 13u}) {
        const std::string text = std::string(before, 'a') + raw + std::string(after, 'z');
        std::string out = "x";
        append_json_string(out, text);
        BOOST_TEST(
            out == "x\"" + std::string(before, 'a') + escaped + std::string(after, 'z') + "\"",
            before << " " << after);
        BOOST_TEST(invalid_utf8_at(text) == (raw == "\xFF" ? before : std::string::npos));
      }
    }
  }
}
