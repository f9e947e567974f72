#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/json_text.hpp>
#include <pyoco/core/param_name.hpp>
#include <pyoco/core/regular_file.hpp>
#include <pyoco/runner/loaded_flow.hpp>
#include <pyoco/trace/redaction.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>

namespace pyoco::runner {

namespace json = boost::json;

namespace {

using Setting = SetupError::Setting;

// Params are data for one run, not a dataset.
constexpr std::uint64_t kMaxParamsFileBytes = 16u << 20;

// Not JSON: YAML, block or flow style, read by the flow reader (its
// limits, its errors) as the defaults of a flow, every line indented under
// them; an error names the file's own line and column.
json::value yaml_params(std::string_view text, const std::filesystem::path& file) {
  constexpr std::uint32_t kHeadLines = 3, kIndent = 4;
  // `---` or `...` alone at a line's start, or followed by a blank.
  auto marker = [](std::string_view line, std::string_view m) {
    return line.substr(0, 3) == m &&
           (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r');
  };
  auto blank = [](std::string_view line) {
    const std::size_t first = line.find_first_not_of(" \t\r");
    return first == std::string_view::npos || line[first] == '#';
  };
  std::string wrapped = "flow:\n  graph: x\n  defaults:\n";
  std::uint32_t lines = 0;
  bool content = false;  // a line of the params themselves seen
  for (std::size_t at = 0; at < text.size();) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(at, end - at);
    at = end + 1;
    ++lines;
    if (marker(line, "...")) break;  // the document's end: nothing after it is read
    if (marker(line, "---")) {
      if (content) {
        throw SetupError(Setting::ParamsFile, file.string() + ":" + std::to_string(lines) +
                                                  ": a second YAML document; a params file "
                                                  "holds one object");
      }
      // The document's start; what follows it on the line is the params'.
      wrapped.append(kIndent + 3, ' ').append(line.substr(3)).push_back('\n');
      content = !blank(line.substr(3));
      continue;
    }
    if (!content && !line.empty() && line.front() == '%') {  // a directive (%YAML 1.2)
      wrapped.push_back('\n');
      continue;
    }
    content = content || !blank(line);
    wrapped.append(kIndent, ' ').append(line).push_back('\n');
  }
  if (!content) {
    throw SetupError(Setting::ParamsFile, file.string() + ": holds no params; expected an object");
  }
  try {
    // Read as YAML whatever the file's name: ".yaml" keeps a TOML reading away.
    return core::to_json(core::parse_flow_text(wrapped, file.string() + ".yaml").defaults);
  } catch (const core::FlowError& e) {
    std::string where = file.string();
    if (e.where().line > kHeadLines) {
      // Past the file's end (a mapping left open) is said at its last line.
      where += ":" + std::to_string(std::min(e.where().line - kHeadLines, lines));
      if (e.where().column > kIndent && e.where().line - kHeadLines <= lines) {
        where += ":" + std::to_string(e.where().column - kIndent);
      }
    }
    std::string problem = e.problem();
    if (problem.rfind("flow.defaults", 0) == 0) problem.replace(0, 13, "params");
    // "(first at line N)", "(line N is indented with a tab...)", "(the '['
    // at line N, column M is not closed...)": positions in the wrapped
    // text, said as the file's own.
    auto shift = [&](std::size_t from, std::uint32_t by) {
      std::uint32_t n = 0;
      const auto [end, ec] =
          std::from_chars(problem.data() + from, problem.data() + problem.size(), n);
      if (ec != std::errc()) return from;
      const std::string shifted = std::to_string(n > by ? n - by : n);
      problem.replace(from, static_cast<std::size_t>(end - (problem.data() + from)), shifted);
      return from + shifted.size();
    };
    // Only the reader's own words ("at line", "(line"): a key may hold "line 5".
    for (const std::string_view lead : {"at line ", "(line "}) {
      for (std::size_t at = problem.find(lead); at != std::string::npos;
           at = problem.find(lead, at)) {
        at = shift(at + lead.size(), kHeadLines);
        if (problem.compare(at, 9, ", column ") == 0) at = shift(at + 9, kIndent);
      }
    }
    throw SetupError(Setting::ParamsFile,
                     where + ": not JSON, and as YAML not an object of params: " + problem);
  }
}

}  // namespace

json::object read_params_file(const std::filesystem::path& file) {
  std::string text;
  try {
    text = core::read_regular_file(file, kMaxParamsFileBytes);
  } catch (const core::FileReadError& e) {
    throw SetupError(Setting::ParamsFile, file.string() + ": " + e.what());
  }
  // A byte order mark, as some editors write, is no part of the params.
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);
  boost::system::error_code ec;
  // The params object, and values within it as deep as any value may be.
  json::value v = core::parse_json(text, ec, 1);
  if (core::is_too_deep(ec)) {
    throw SetupError(Setting::ParamsFile,
                     file.string() + ": a param is " + std::string(core::kTooDeepText));
  }
  // Named .json, it is JSON: read as YAML, a slip ({"a": 1, "b": }) would
  // run with a null for "b".
  std::string extension = file.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ec && extension == ".json") {
    throw SetupError(Setting::ParamsFile,
                     file.string() + ":" +
                         core::json_error_position(text, core::kMaxValueDepth + 1) +
                         ": not JSON: " + ec.message());
  }
  if (ec) {
    v = yaml_params(text, file);
  } else if (const core::JsonTextProblem p =
                 core::json_text_problem(text, core::kMaxValueDepth + 1, "params");
             p.kind == core::JsonTextProblem::Kind::DuplicateKey) {
    // A YAML params file refuses it too: which of the two was meant is no reader's guess.
    throw SetupError(Setting::ParamsFile,
                     file.string() + ": " + p.path + ": " + std::string(core::kDuplicateKeyText));
  } else if (const std::string_view big = core::oversized_json_integer(text); !big.empty()) {
    // As a YAML params file or a flow file says it (at its place), not
    // rounded to a double.
    throw SetupError(
        Setting::ParamsFile,
        file.string() + ":" +
            core::line_column(text, static_cast<std::size_t>(big.data() - text.data())) + ": " +
            std::string(big) + ": too large for a 64-bit integer; quote it to keep it as text");
  }
  if (!v.is_object()) throw SetupError(Setting::ParamsFile, file.string() + ": expected an object");
  for (const auto& [key, value] : v.as_object()) {
    const std::string name(key);
    if (const std::string why = core::param_name_problem(name); !why.empty()) {
      const auto dot = name.find('.');
      throw SetupError(
          Setting::ParamsFile,
          file.string() + ": " + core::shown_param_name(name) + ": " + why +
              (dot == std::string::npos ? std::string("; give it a name")
                                        : "; give the whole param: " + name.substr(0, dot) + ": {" +
                                              name.substr(dot + 1) + ": ...}"));
    }
  }
  // JSON has no infinity: 1e999 parses to one, which a run cannot record.
  if (const std::string at = core::non_finite_number_at(v, "params"); !at.empty()) {
    throw SetupError(Setting::ParamsFile,
                     file.string() + ": " + at + ": a number too large for a double");
  }
  return std::move(v.as_object());
}

namespace {

core::Value parse_params(const ParamArgs& args, std::vector<std::string>& secrets) {
  json::object params;
  if (!args.file.empty()) params = read_params_file(args.file);
  for (const std::string& kv : args.assignments) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw SetupError(Setting::Param, kv + ": expected KEY=VALUE");
    }
    if (const std::string why = core::param_option_problem(kv.substr(0, eq), "-p"); !why.empty()) {
      throw SetupError(Setting::Param, why);
    }
    const std::string value = kv.substr(eq + 1);
    boost::system::error_code ec;
    json::value v = core::parse_json(value, ec, 0);
    if (core::is_too_deep(ec)) {
      // Not text that happens to start with '[': a value past the limit.
      throw SetupError(Setting::Param, kv.substr(0, eq) + ": " + std::string(core::kTooDeepText));
    }
    // What the value cannot tell: a key written twice, an integer past 64
    // bits (it would be rounded to a double).
    if (const std::string key = kv.substr(0, eq); !ec) {
      if (const core::JsonTextProblem p =
              core::json_text_problem(value, core::kMaxValueDepth, key)) {
        const bool whole = p.integer.size() == value.size();  // the value is that number
        throw SetupError(Setting::Param,
                         p.path + ": " + core::problem_text(p) +
                             (whole ? " (-p '" + key + "=\"" + value + "\"')" : std::string()));
      }
    }
    params[kv.substr(0, eq)] = ec ? json::value(json::string(value)) : v;
  }
  for (const std::string& kv : args.secrets) {
    const auto eq = kv.find('=');
    const std::string key = kv.substr(0, eq);
    if (key.empty()) throw SetupError(Setting::Secret, kv + ": expected KEY=VALUE or KEY");
    std::string value;
    if (eq != std::string::npos) {
      value = kv.substr(eq + 1);
    } else if (const char* env = std::getenv(key.c_str()); env != nullptr) {
      value = env;
    } else {
      throw SetupError(Setting::Secret,
                       key + ": no environment variable " + key + " (or give KEY=VALUE)");
    }
    if (value.size() < trace::Redactor::kMinSecretBytes) {
      throw SetupError(Setting::Secret, key + ": a secret must be at least " +
                                            std::to_string(trace::Redactor::kMinSecretBytes) +
                                            " bytes long: a shorter one would mask ordinary text");
    }
    params[key] = json::string(value);
    secrets.push_back(std::move(value));
  }
  // The engine would see infinity, the history null: refused, as JSON has none.
  if (const std::string at = core::non_finite_number_at(params, "params"); !at.empty()) {
    throw SetupError(
        Setting::Param,
        at.substr(7) + ": a number too large for a double; quote it to keep it as text");
  }
  return core::from_json(params);
}

core::Value merged_params(const LoadedFlow& loaded) {
  json::object merged = core::to_json(loaded.flow->spec->defaults).as_object();
  const json::value given = core::to_json(loaded.params);
  for (const auto& [k, v] : given.as_object()) merged[k] = v;
  return core::from_json(merged);
}

class CatalogResolver : public core::TaskResolver {
 public:
  explicit CatalogResolver(const plugins::Catalog& c) : catalog_(c) {}
  TaskInfo resolve(const std::string& name) const override {
    TaskInfo info;
    const auto ref = catalog_.find_task(name);
    if (!ref) {
      info.why_missing = plugins::why_task_missing(catalog_, name);
      return info;
    }
    info.exists = true;
    info.inputs_complete = true;
    for (const auto& io : ref->task->inputs) {
      info.inputs.push_back(io.name);
      if (io.required) info.required_inputs.push_back(io.name);
      if (!io.type.empty()) info.input_types[io.name] = io.type;
    }
    return info;
  }

 private:
  const plugins::Catalog& catalog_;
};

}  // namespace

LoadedFlow load_flow(const std::filesystem::path& file, const ParamArgs& params) {
  auto spec = std::make_shared<const core::FlowSpec>(core::load_flow_file(file));
  LoadedFlow loaded;
  // Cycles are kept for check to report with the rest; the engine refuses them.
  loaded.flow =
      std::make_shared<const core::CompiledFlow>(core::compile_flow_for_check(std::move(spec)));
  loaded.params = parse_params(params, loaded.secrets);
  return loaded;
}

std::vector<core::Diagnostic> check(const LoadedFlow& flow, const plugins::Catalog& catalog) {
  std::vector<core::Diagnostic> out = flow.flow->errors;
  for (auto& d : core::check_flow(*flow.flow, CatalogResolver(catalog), merged_params(flow))) {
    out.push_back(std::move(d));
  }
  for (const core::PluginRequirement& r : flow.flow->spec->plugins) {
    if (std::string why = plugins::unmet_requirement(catalog, r.name, r.min_version);
        !why.empty()) {
      out.push_back(core::Diagnostic{core::Diagnostic::Severity::Error, r.where, std::move(why)});
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const core::Diagnostic& a, const core::Diagnostic& b) {
                     return a.where.line < b.where.line ||
                            (a.where.line == b.where.line && a.where.column < b.where.column);
                   });
  return out;
}

std::vector<core::Diagnostic> check_before_run(const LoadedFlow& flow,
                                               const plugins::Catalog& catalog) {
  std::vector<core::Diagnostic> errors;
  for (auto& d : check(flow, catalog)) {
    if (d.severity == core::Diagnostic::Severity::Error) errors.push_back(std::move(d));
  }
  return errors;
}

}  // namespace pyoco::runner
