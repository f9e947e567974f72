#include <pyoco/abi.h>
#include <pyoco/version.h>
#include <pyoco/core/text.hpp>
#include <pyoco/plugins/manifest.hpp>
#include <pyoco/plugins/scaffold.hpp>

#include <boost/dll/runtime_symbol_info.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace pyoco::plugins {

namespace fs = std::filesystem;

namespace {

// `text` as it goes between the quotes of a TOML basic string: the author
// (from --author or $USER) lands in plugin.toml, where a `"` or a newline
// would end the string and write keys of its own.
std::string toml_basic_string_body(const std::string& text) {
  if (core::invalid_utf8_at(text) != std::string::npos) {
    throw ScaffoldError("--author must be UTF-8 text (it goes into plugin.toml)");
  }
  std::string quoted;
  core::append_json_string(quoted, text);  // JSON's escapes are TOML's
  return quoted.substr(1, quoted.size() - 2);
}

std::string substitute(const std::string& text, const TemplateVars& vars) {
  std::string out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t open = text.find("{{", pos);
    if (open == std::string::npos) break;
    const std::size_t close = text.find("}}", open + 2);
    if (close == std::string::npos) break;
    const auto it = vars.find(text.substr(open + 2, close - open - 2));
    if (it == vars.end()) {
      // Not a variable (a brace initialiser, say): keep the braces, go on after them.
      out.append(text, pos, open + 2 - pos);
      pos = open + 2;
      continue;
    }
    out.append(text, pos, open - pos);
    out += it->second;
    pos = close + 2;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

std::string camel_case(const std::string& snake) {
  std::string out;
  bool upper = true;
  for (char c : snake) {
    if (c == '_') {
      upper = true;
    } else {
      out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
      upper = false;
    }
  }
  return out;
}

}  // namespace

std::string render_template(const std::string& text, const TemplateVars& vars,
                            const std::vector<TemplateVars>& tasks) {
  static const std::string begin = "{{#tasks}}", end = "{{/tasks}}";
  std::string out;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t b = text.find(begin, pos);
    if (b == std::string::npos) break;
    const std::size_t e = text.find(end, b);
    if (e == std::string::npos) throw ScaffoldError("template: {{#tasks}} without {{/tasks}}");
    out += substitute(text.substr(pos, b - pos), vars);
    std::string block = text.substr(b + begin.size(), e - b - begin.size());
    if (!block.empty() && block.front() == '\n') block.erase(0, 1);  // the marker's own line
    for (const TemplateVars& task : tasks) {
      TemplateVars all = vars;
      for (const auto& [k, v] : task) all[k] = v;
      out += substitute(block, all);
    }
    pos = e + end.size();
    if (pos < text.size() && text[pos] == '\n') ++pos;
  }
  out += substitute(text.substr(pos), vars);
  return out;
}

namespace {

// The scaffold's CMakeLists.txt makes a target of the plugin's name
// (pyoco_add_plugin): CMake refuses these (CMP0037), some once CTest or
// CPack is included. Refused here rather than renamed, so that every
// plugin's target keeps its plugin's name.
constexpr std::string_view kCmakeReserved[] = {"all",
                                               "clean",
                                               "help",
                                               "install",
                                               "preinstall",
                                               "test",
                                               "package",
                                               "package_source",
                                               "edit_cache",
                                               "rebuild_cache",
                                               "list_install_components"};

// A name longer than this makes file names (tests/<name>_test.cpp,
// libpyoco_<name>.so) past the 255 bytes a file system allows; lint (PL002)
// and the cluster's repository take plugin names no longer.
constexpr std::size_t kMaxScaffoldName = kMaxPluginNameLength;

// Writes the project into `o.out`, which is missing or empty.
std::vector<fs::path> write_project(const ScaffoldOptions& o, const TemplateVars& vars,
                                    const std::vector<TemplateVars>& tasks) {
  std::vector<fs::path> written;
  fs::create_directories(o.out);
  for (auto it = fs::recursive_directory_iterator(o.templates);
       it != fs::recursive_directory_iterator(); ++it) {
    const fs::path rel = fs::relative(it->path(), o.templates);
    const fs::path target = o.out / render_template(rel.string(), vars, tasks);
    if (it->is_directory()) {
      fs::create_directories(target);
      continue;
    }
    std::ifstream in(it->path(), std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    fs::create_directories(target.parent_path());
    std::ofstream out(target, std::ios::binary);
    out << render_template(text.str(), vars, tasks);
    if (!out) throw ScaffoldError("cannot write " + target.string());
    written.push_back(fs::relative(target, o.out));
  }
  std::sort(written.begin(), written.end());
  return written;
}

}  // namespace

std::vector<fs::path> scaffold_plugin(const ScaffoldOptions& o) {
  if (!is_valid_name(o.plugin)) {
    throw ScaffoldError("plugin name '" + core::printable(o.plugin) +
                        "' must be lower case letters, digits and _, starting with a letter "
                        "(lint rule PL002)");
  }
  if (o.plugin.size() > kMaxScaffoldName) {
    throw ScaffoldError(
        "plugin name '" + o.plugin.substr(0, 20) + "...' is " + std::to_string(o.plugin.size()) +
        " characters long: choose one of at most " + std::to_string(kMaxScaffoldName) +
        " (files are named after it, and a file name has at most 255 bytes)");
  }
  for (const std::string_view reserved : kCmakeReserved) {
    if (o.plugin == reserved) {
      throw ScaffoldError("plugin name '" + o.plugin +
                          "' is a target name CMake reserves, and the plugin's CMake target "
                          "takes its name: choose another, e.g. '" +
                          o.plugin + "_plugin'");
    }
  }
  if (o.tasks.empty()) throw ScaffoldError("a plugin needs at least one task (--task NAME)");
  for (std::size_t i = 0; i < o.tasks.size(); ++i) {
    if (!is_valid_name(o.tasks[i])) {
      throw ScaffoldError("task name '" + core::printable(o.tasks[i]) +
                          "' must be lower case letters, digits and _, starting with a letter "
                          "(lint rule PL009)");
    }
    if (o.tasks[i].size() > kMaxScaffoldName) {
      throw ScaffoldError("task name '" + o.tasks[i].substr(0, 20) + "...' is " +
                          std::to_string(o.tasks[i].size()) +
                          " characters long: choose one of at most " +
                          std::to_string(kMaxScaffoldName));
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (o.tasks[j] == o.tasks[i]) throw ScaffoldError("task '" + o.tasks[i] + "' given twice");
      // Each task is a C++ struct named after it (a_b: AB): two names that
      // differ only in underscores would be one struct, and not compile.
      if (camel_case(o.tasks[j]) == camel_case(o.tasks[i])) {
        throw ScaffoldError("tasks '" + o.tasks[j] + "' and '" + o.tasks[i] +
                            "' differ only in underscores: both would be the C++ struct " +
                            camel_case(o.tasks[i]) + "; rename one");
      }
    }
  }
  if (!fs::is_directory(o.templates)) {
    throw ScaffoldError("no plugin template at " + o.templates.string() +
                        " (is pyoco installed completely?)");
  }
  std::error_code ec;
  const fs::file_status status = fs::status(o.out, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    throw ScaffoldError("cannot use " + o.out.string() + ": " + ec.message() +
                        ": choose another --dir");
  }
  const bool existed = fs::exists(status);
  if (existed && !fs::is_directory(status)) {
    throw ScaffoldError(o.out.string() +
                        " exists and is not a directory: choose another --dir (a new or empty "
                        "directory)");
  }
  if (existed && !fs::is_empty(o.out, ec)) {
    throw ScaffoldError(o.out.string() + " already exists and is not empty: choose another --dir");
  }

  TemplateVars vars = {
      {"plugin", o.plugin},
      {"abi", std::to_string(PYOCO_ABI_VERSION_MAJOR)},
      {"sdk_version", PYOCO_VERSION_STRING},
      {"sdk_major",
       std::to_string(PYOCO_VERSION_MAJOR) + "." + std::to_string(PYOCO_VERSION_MINOR)},
      {"author", toml_basic_string_body(o.author.empty() ? "you" : o.author)},
      {"os", host_os()},
      {"arch", host_arch()},
      {"prefix_arg", o.prefix_arg},
  };
  std::string chain, list;
  std::vector<TemplateVars> tasks;
  for (const std::string& t : o.tasks) {
    chain += (chain.empty() ? "" : " >> ") + t;
    list += (list.empty() ? "" : ", ") + ("`" + t + "`");
    tasks.push_back({{"task", t}, {"Task", camel_case(t)}});
  }
  vars["task_chain"] = chain;
  vars["task_list"] = list;

  // All of it or nothing: a half-made project would be refused by the
  // next try ("not empty") and would not build.
  auto undo = [&] {
    std::error_code ignored;
    if (!existed) {
      fs::remove_all(o.out, ignored);
      return;
    }
    for (const auto& entry : fs::directory_iterator(o.out, ignored)) {
      fs::remove_all(entry.path(), ignored);
    }
  };
  try {
    return write_project(o, vars, tasks);
  } catch (const ScaffoldError&) {
    undo();
    throw;
  } catch (const std::exception& e) {
    undo();
    throw ScaffoldError(std::string("cannot write the project: ") + e.what());
  }
}

fs::path install_template_dir() {
  return (boost::dll::program_location().parent_path() / ".." / "share" / "pyoco" / "templates" /
          "plugin")
      .lexically_normal()
      .string();
}

}  // namespace pyoco::plugins
