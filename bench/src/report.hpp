// The results as people read them: Markdown tables from the JSON results,
// and the targets checked against them.
#pragma once

#include <boost/json/object.hpp>

#include <string>

namespace pyoco::bench {

// Adds "overhead", "scaling" and "targets" to results that hold "engine",
// "startup" and "discovery".
void summarize_results(boost::json::object& results);

std::string render_markdown(const boost::json::object& results);

// JSON with one member per line and two-space indents, for readable diffs.
std::string pretty_json(const boost::json::value& v);

}  // namespace pyoco::bench
