// `pyoco graph`: a compiled flow as Graphviz dot or Mermaid text. Its own file:
// presentation for people, which neither building nor checking needs.
#include <pyoco/core/flow_graph.hpp>

#include <cctype>
#include <string>

namespace pyoco::core {

namespace {

// A DOT string of any text (an id or a label): a backslash and a quote
// escaped once each, a line break as \n. A switch case 'x"' (JSON "x\"")
// came out as \\" when only quotes were escaped: a reader that takes \\ for
// one backslash ends the string there, and the rest of the case was DOT.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c != '\r') {
      out += c;
    }
  }
  return out + "\"";
}

// Its lines as text; quoted() writes the break as DOT's \n.
std::string node_label(const GraphNode& n) {
  if (n.kind == GraphNode::Kind::Task) {
    return n.name == n.task->name ? n.name + "\n" + n.task->use
                                  : n.name + " (" + n.task->name + ")\n" + n.task->use;
  }
  return n.name;
}

void dot_graph(const FlowGraph& g, const std::string& prefix, std::string& out, int& clusters) {
  for (std::uint32_t i = 0; i < g.nodes.size(); ++i) {
    const GraphNode& n = g.nodes[i];
    const std::string id = quoted(prefix + n.name);
    if (n.kind == GraphNode::Kind::Join) {
      out += "  " + id + " [shape=point];\n";
    } else if (n.kind == GraphNode::Kind::Task) {
      out += "  " + id + " [label=" + quoted(node_label(n)) + "];\n";
    } else {
      out += "  " + id + " [shape=diamond, label=" + quoted(n.name) + "];\n";
      for (std::size_t c = 0; c < n.children.size(); ++c) {
        std::string label = n.name;
        if (n.kind == GraphNode::Kind::Switch) {
          const auto& sc = n.switch_term->cases[c];
          label += sc.is_default ? ": default" : ": " + to_json_text(sc.match);
        }
        const std::string sub = prefix + n.name + "/" + std::to_string(c) + "/";
        out += "  subgraph cluster_" + std::to_string(++clusters) +
               " {\n    label=" + quoted(label) + ";\n";
        std::string inner;
        dot_graph(*n.children[c], sub, inner, clusters);
        out += inner;
        out += "  }\n";
        for (std::uint32_t r : n.children[c]->roots()) {
          out += "  " + id + " -> " + quoted(sub + n.children[c]->nodes[r].name) +
                 " [style=dashed];\n";
        }
      }
    }
    for (const Requirement& r : n.requirements) {
      for (std::uint32_t p : r.nodes) {
        out += "  " + quoted(prefix + g.nodes[p].name) + " -> " + id +
               (r.any ? " [style=dotted, label=\"any\"]" : "") + ";\n";
      }
    }
  }
}

std::string mermaid_id(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  // Words Mermaid reads as syntax: a node named `end` would close a subgraph.
  static const char* const kReserved[] = {"end",       "graph",     "subgraph", "flowchart",
                                          "style",     "classdef",  "class",    "click",
                                          "linkstyle", "direction", "default"};
  std::string lower = out;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* word : kReserved) {
    if (lower == word) return out + "_node";
  }
  return out;
}

// Text inside a quoted Mermaid label: a '"' would end it, so it is written
// as the entity #quot; (and '#' as #35; so that text is never read as one);
// '<' and '>' as #lt; and #gt;, as labels are read as HTML (`<br/>` breaks
// a line): a case's value is shown, never taken for markup.
std::string mermaid_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"') {
      out += "#quot;";
    } else if (c == '#') {
      out += "#35;";
    } else if (c == '<') {
      out += "#lt;";
    } else if (c == '>') {
      out += "#gt;";
    } else {
      out += c;
    }
  }
  return out;
}

void mermaid_graph(const FlowGraph& g, const std::string& prefix, std::string& out) {
  for (const GraphNode& n : g.nodes) {
    const std::string id = mermaid_id(prefix + n.name);
    if (n.kind == GraphNode::Kind::Join) {
      out += "  " + id + "(( ))\n";
    } else if (n.kind == GraphNode::Kind::Task) {
      out +=
          "  " + id + "[\"" + mermaid_text(n.name) + "<br/>" + mermaid_text(n.task->use) + "\"]\n";
    } else {
      out += "  " + id + "{\"" + mermaid_text(n.name) + "\"}\n";
      for (std::size_t c = 0; c < n.children.size(); ++c) {
        const std::string sub = prefix + n.name + "_" + std::to_string(c) + "_";
        std::string label = n.name;
        if (n.kind == GraphNode::Kind::Switch) {
          const auto& sc = n.switch_term->cases[c];
          label += sc.is_default ? ": default" : ": " + std::string(to_json_text(sc.match));
        }
        out += "  subgraph " + mermaid_id(sub) + "[\"" + mermaid_text(label) + "\"]\n";
        mermaid_graph(*n.children[c], sub, out);
        out += "  end\n";
        for (std::uint32_t r : n.children[c]->roots()) {
          out += "  " + id + " -.-> " + mermaid_id(sub + n.children[c]->nodes[r].name) + "\n";
        }
      }
    }
    for (const Requirement& r : n.requirements) {
      for (std::uint32_t p : r.nodes) {
        out += "  " + mermaid_id(prefix + g.nodes[p].name) + (r.any ? " -. any .-> " : " --> ") +
               id + "\n";
      }
    }
  }
}

}  // namespace

std::string export_dot(const CompiledFlow& flow) {
  std::string out =
      "digraph " + quoted(flow.spec->name) + " {\n  rankdir=LR;\n  node [shape=box];\n";
  int clusters = 0;
  dot_graph(flow.graph, "", out, clusters);
  return out + "}\n";
}

std::string export_mermaid(const CompiledFlow& flow) {
  std::string out = "flowchart LR\n";
  mermaid_graph(flow.graph, "", out);
  return out;
}

}  // namespace pyoco::core
