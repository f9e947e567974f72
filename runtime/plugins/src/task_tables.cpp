#include <pyoco/core/regular_file.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/plugins/loader.hpp>
#include <pyoco/plugins/task_tables.hpp>

#include <algorithm>
#include <set>
#include <stdexcept>

#include "registration.hpp"

namespace pyoco::plugins {

namespace {

// A value in a difference message: quoted, escaped, and short.
std::string shown(std::string_view s) {
  constexpr std::size_t kMax = 60;
  std::string out = "\"" + core::printable(s.substr(0, kMax)) + "\"";
  if (s.size() > kMax) out.insert(out.size() - 1, "...");
  return out;
}

std::string names_of(const std::vector<IoSpec>& ios) {
  std::string out;
  for (const IoSpec& io : ios) out += (out.empty() ? "" : ", ") + io.name;
  return "[" + out + "]";
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return "[" + out + "]";
}

class Differences {
 public:
  void field(const std::string& what, std::string_view declared, std::string_view registered) {
    if (declared == registered) return;
    list_.push_back(what + ": " + shown(declared) + " in plugin.toml, " + shown(registered) +
                    " in the library");
  }

  void ios(const char* kind, const std::vector<IoSpec>& declared,
           const std::vector<IoSpec>& registered) {
    const std::string plural = std::string(kind) + "s";
    if (names_of(declared) != names_of(registered)) {
      list_.push_back(plural + ": " + names_of(declared) + " in plugin.toml, " +
                      names_of(registered) + " in the library");
      return;
    }
    for (std::size_t i = 0; i < declared.size(); ++i) {
      const IoSpec& d = declared[i];
      const IoSpec& r = registered[i];
      const std::string what = std::string(kind) + " '" + d.name + "' ";
      field(what + "type", d.type, r.type);
      field(what + "required", d.required ? "true" : "false", r.required ? "true" : "false");
      field(what + "description", d.description, r.description);
    }
  }

  std::string message(const std::string& task) const {
    std::string out = "task '" + task + "': ";
    for (std::size_t i = 0; i < list_.size(); ++i) out += (i == 0 ? "" : "; ") + list_[i];
    return out;
  }
  bool empty() const { return list_.empty(); }

 private:
  std::vector<std::string> list_;
};

// A TOML basic string. A JSON string literal is one, but for DEL, which
// TOML wants escaped; text that is not UTF-8 cannot be written at all.
std::string toml_string(std::string_view s) {
  if (core::invalid_utf8_at(s) != std::string_view::npos) {
    throw std::invalid_argument("\"" + core::printable(s) + "\" is not UTF-8");
  }
  std::string out;
  core::append_json_string(out, s);
  for (std::size_t at = out.find('\x7f'); at != std::string::npos; at = out.find('\x7f', at)) {
    out.replace(at, 1, "\\u007F");
  }
  return out;
}

// toml_string, whose refusal names where the text is: "task 'greet'
// summary: ...", so the author knows what to fix in the task's code.
std::string toml_field(std::string_view s, const TaskDefinition& t, const std::string& field) {
  try {
    return toml_string(s);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("task '" + core::printable(t.name) + "' " + field + ": " +
                                e.what());
  }
}

std::string io_table(const IoSpec& io, const TaskDefinition& t, const char* what) {
  const std::string field = std::string(what) + " '" + core::printable(io.name) + "'";
  std::string table = "{name = " + toml_field(io.name, t, field + " name");
  if (!io.type.empty()) table += ", type = " + toml_field(io.type, t, field + " type");
  if (io.required) table += ", required = true";
  if (!io.description.empty()) {
    table += ", description = " + toml_field(io.description, t, field + " description");
  }
  return table + "}";
}

// One input on the key's line, several one per line.
std::string io_tables(const std::vector<IoSpec>& ios, const TaskDefinition& t, const char* what) {
  if (ios.size() == 1) return "[" + io_table(ios.front(), t, what) + "]";
  std::string out = "[\n";
  for (const IoSpec& io : ios) out += "  " + io_table(io, t, what) + ",\n";
  return out + "]";
}

}  // namespace

TaskMismatch compare_tasks(const Manifest& m, const std::vector<TaskDefinition>& registered) {
  TaskMismatch diff;
  std::set<std::string> have;
  for (const TaskDefinition& t : registered) have.insert(t.name);
  for (const TaskManifest& t : m.tasks) {
    if (have.count(t.name) == 0) diff.unregistered.push_back(t.name);
  }
  for (const TaskDefinition& r : registered) {
    const auto d = std::find_if(m.tasks.begin(), m.tasks.end(),
                                [&](const TaskManifest& t) { return t.name == r.name; });
    if (d == m.tasks.end()) {
      diff.undeclared.push_back(r.name);
      continue;
    }
    Differences differences;
    differences.field("summary", d->summary, r.summary);
    differences.field("usage", d->usage, r.usage);
    if (d->tags != r.tags) {
      differences.field("tags", joined(d->tags), joined(r.tags));
    }
    differences.ios("input", d->inputs, r.inputs);
    differences.ios("output", d->outputs, r.outputs);
    if (!differences.empty()) diff.differing.push_back(differences.message(r.name));
  }
  return diff;
}

std::string task_tables(const std::vector<TaskDefinition>& tasks) {
  std::string out;
  for (const TaskDefinition& t : tasks) {
    out += "\n[[tasks]]\nname = " + toml_field(t.name, t, "name") + "\n";
    if (!t.summary.empty()) out += "summary = " + toml_field(t.summary, t, "summary") + "\n";
    if (!t.usage.empty()) out += "usage = " + toml_field(t.usage, t, "usage") + "\n";
    if (!t.tags.empty()) {
      out += "tags = [";
      for (std::size_t i = 0; i < t.tags.size(); ++i) {
        out += (i == 0 ? "" : ", ") + toml_field(t.tags[i], t, "tag");
      }
      out += "]\n";
    }
    if (!t.inputs.empty()) out += "inputs = " + io_tables(t.inputs, t, "input") + "\n";
    if (!t.outputs.empty()) out += "outputs = " + io_tables(t.outputs, t, "output") + "\n";
  }
  return out;
}

std::string built_manifest(const std::filesystem::path& source,
                           const std::filesystem::path& library) {
  std::string text;
  try {
    text = core::read_regular_file(source, 1u << 20);
  } catch (const core::FileReadError& e) {
    throw ManifestError(source, 0, "", e.what());
  }
  Manifest m = parse_manifest(text, source);
  if (!m.tasks.empty()) {
    throw ManifestError(m.file, m.tasks.front().line, "tasks",
                        "[[tasks]] tables are written from what the library registers; "
                        "delete them from this source manifest and describe each task in its "
                        "code (name, summary, usage, tags, inputs, outputs)");
  }
  if (library.filename() != m.library) {
    throw ManifestError(
        m.file, m.line_of("library"), "[plugin] library",
        "is \"" + m.library + "\" but the library built is " + library.filename().string());
  }
  m.dir = library.parent_path();
  LoadedPlugin plugin = register_plugin(m);
  std::string tables;
  try {
    tables = task_tables(plugin.tasks);
  } catch (const std::invalid_argument& e) {
    plugin.release_tasks();
    throw LoadError(LoadError::Reason::Register,
                    m.library + " describes a task with text that is not UTF-8: " + e.what() +
                        " (write it as UTF-8 in the task's code)");
  }

  if (!text.empty() && text.back() != '\n') text += '\n';
  text += "\n# The tables below are written by `pyoco plugins manifest` from what " + m.library +
          "\n# registers. Edit the task's code, not them.\n";
  text += tables;
  // Read back below, and by every pyoco that lists or loads the plugin,
  // with the same 1 MiB bound as any manifest: said about what is built.
  if (text.size() > (1u << 20)) {
    const std::size_t count = plugin.tasks.size();
    plugin.release_tasks();
    throw LoadError(LoadError::Reason::Register,
                    "the manifest written for the " + std::to_string(count) + " tasks " +
                        m.library + " registers would be " + std::to_string(text.size()) +
                        " bytes, more than the 1048576 a plugin.toml may hold: register fewer "
                        "tasks (split the plugin), or describe them more briefly");
  }

  // What was written must read back as exactly what the library registers.
  const Manifest written = parse_manifest(text, m.file);
  const TaskMismatch diff = compare_tasks(written, plugin.tasks);
  plugin.release_tasks();
  if (!diff.empty()) {
    throw LoadError(
        LoadError::Reason::TasksMismatch,
        "the [[tasks]] written do not read back as registered (a bug in pyoco): " +
            (diff.differing.empty() ? std::string("task names differ") : diff.differing.front()));
  }
  return text;
}

}  // namespace pyoco::plugins
