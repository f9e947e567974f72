// `pyoco keys create|list|revoke|import`: the gateway's API keys, in the
// `pyoco_auth` bucket (docs/security.md). Talks to NATS directly: whoever
// may run it holds the NATS credentials, which is what makes it admin.
#include <pyoco/cluster/api_keys.hpp>
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/core/regular_file.hpp>
#include <pyoco/core/value.hpp>

#include <boost/json.hpp>

#include <stdio_ext.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "app.hpp"
#include "command.hpp"
#include "nats_flags.hpp"
#include "table.hpp"

namespace pyoco::cli {

namespace json = boost::json;

namespace {

struct KeysArgs {
  NatsFlags nats;
  std::string tenant;
  std::vector<std::string> scopes;
  std::vector<std::string> tags;
  std::string expires;
  std::string key_id;
  std::string file;
  bool json = false;
};

// The scopes named, as bits; throws std::invalid_argument for an unknown one.
unsigned scope_bits(const std::vector<std::string>& names) {
  unsigned bits = 0;
  for (const std::string& n : names) {
    const auto bit = cluster::scope_from_name(n);
    if (!bit) {
      throw std::invalid_argument("--scope " + n + ": not a scope (" + cluster::all_scope_names() +
                                  ")");
    }
    bits |= *bit;
  }
  return bits;
}

// "30d", "12h", "90m", "3600s" from now, or a UTC date "2027-01-31"; at
// most kMaxExpiryDays ahead (a key for longer is one with no --expires).
constexpr double kMaxExpiryDays = 36500;

double expiry_from(const std::string& text) {
  const double now = cluster::epoch_now();
  auto within_limit = [&](double at) {
    if (at - now > kMaxExpiryDays * 86400) {
      throw std::invalid_argument("--expires " + text +
                                  ": more than 100 years from now (36500d); for a key that does "
                                  "not expire, leave --expires out");
    }
    return at;
  };
  if (text.size() >= 2 && std::isdigit(static_cast<unsigned char>(text.front())) != 0 &&
      std::string_view("smhd").find(text.back()) != std::string_view::npos &&
      text.find_first_not_of("0123456789") == text.size() - 1 && text.size() <= 16) {
    const double n = std::stod(text.substr(0, text.size() - 1));
    const double unit = text.back() == 's'   ? 1
                        : text.back() == 'm' ? 60
                        : text.back() == 'h' ? 3600
                                             : 86400;
    if (n > 0) return within_limit(now + n * unit);
  }
  std::tm tm{};
  std::istringstream in(text);
  in >> std::get_time(&tm, "%Y-%m-%d");
  if (!in.fail() && in.peek() == EOF) {
    const int year = tm.tm_year, month = tm.tm_mon, day = tm.tm_mday;
    const std::time_t t = timegm(&tm);  // normalises: the 30th of February is March's 2nd
    std::tm back{};
    gmtime_r(&t, &back);
    if (back.tm_year != year || back.tm_mon != month || back.tm_mday != day) {
      throw std::invalid_argument("--expires " + text +
                                  ": no such day (that month has fewer days); a UTC date "
                                  "(2027-01-31)");
    }
    const double at = static_cast<double>(t);
    if (at > now) return within_limit(at);
    throw std::invalid_argument("--expires " + text + ": that day has passed");
  }
  throw std::invalid_argument("--expires " + text +
                              ": a duration from now (30d, 12h, 90m, 3600s) or a UTC date "
                              "(2027-01-31)");
}

std::string time_text(std::optional<double> at) { return utc_time_text(at); }

std::string state_of(const cluster::ApiKeyRecord& r) {
  return r.revoked() ? "revoked" : r.expired(cluster::epoch_now()) ? "expired" : "active";
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ",") + s;
  return out.empty() ? "-" : out;
}

// What list and revoke show of a key: everything but the hash and salt.
json::object shown(const cluster::ApiKeyRecord& r) {
  json::array scopes;
  for (const std::string& s : r.scopes) scopes.emplace_back(s);
  return json::object{
      {"key_id", r.key_id},
      {"tenant_id", r.tenant_id},
      {"scopes", std::move(scopes)},
      {"created_at", r.created_at},
      {"expires_at", r.expires_at ? json::value(*r.expires_at) : json::value(nullptr)},
      {"revoked_at", r.revoked_at ? json::value(*r.revoked_at) : json::value(nullptr)},
      {"tags", json::array(r.tags.begin(), r.tags.end())},
      {"state", state_of(r)},
  };
}

std::string pepper() {
  const char* p = std::getenv("PYOCO_AUTH_PEPPER");
  return p != nullptr ? p : "";
}

template <class F>
int with_store(const char* verb, const KeysArgs& a, F&& f) {
  try {
    cluster::Connection nats(a.nats.connect_options("pyoco keys"));
    cluster::ApiKeyStore store(nats);
    return f(store);
  } catch (const cluster::NatsError& e) {
    std::cerr << "pyoco keys " << verb << ": " << e.what() << '\n';
    return kExitUsage;
  } catch (const std::invalid_argument& e) {
    std::cerr << "pyoco keys " << verb << ": " << e.what() << '\n';
    return kExitUsage;
  }
}

int run_create(const KeysArgs& a) {
  // The arguments first: a mistake is said before NATS is asked for anything.
  unsigned scopes = 0;
  std::optional<double> expires;
  try {
    scopes = scope_bits(a.scopes);
    if (!a.expires.empty()) expires = expiry_from(a.expires);
    for (const std::string& t : a.tags) {
      try {
        cluster::check_tag(t);  // the runs' own rule: a key's tag must be one a run can have
      } catch (const cluster::NatsError& e) {
        throw std::invalid_argument("--tags " + t + ": " + e.what());
      }
    }
  } catch (const std::invalid_argument& e) {
    std::cerr << "pyoco keys create: " << e.what() << '\n';
    return kExitUsage;
  }
  // A reader that left (a closed pipe) is a write error to see, not a
  // signal that ends the command before it can revoke the key.
  std::signal(SIGPIPE, SIG_IGN);
  return with_store("create", a, [&](cluster::ApiKeyStore& store) {
    const cluster::NewApiKey key =
        cluster::generate_api_key(a.tenant, scopes, expires, pepper(), 200000, a.tags);
    if (!store.create(key.record)) {
      throw cluster::NatsError("a key " + key.record.key_id + " exists already: try again");
    }
    if (a.json) {
      json::object o = shown(key.record);
      o["api_key"] = key.api_key;
      std::cout << json::serialize(o) << '\n';
    } else {
      std::cout << key.api_key << '\n';
    }
    // Its secret exists only in that line: a key nobody received (a full
    // disk, a closed pipe) would be an active key nobody holds. Revoked.
    if (const int err = stdout_error(); err != 0) {
      __fpurge(stdout);  // (glibc) never written later: the key is revoked
      std::clearerr(stdout);
      std::cout.clear();
      bool revoked = false;
      std::string why_not;
      try {
        revoked = store.revoke(key.record.key_id).has_value();
      } catch (const std::exception& e) {
        why_not = e.what();  // said below, with the key and how to revoke it
      }
      std::cerr << "pyoco keys create: cannot write the key to standard output"
                << (err > 0 ? std::string(": ") + std::strerror(err) : std::string()) << "; key "
                << key.record.key_id
                << (revoked
                        ? " is revoked, so no active key has a secret nobody holds"
                        : " could not be revoked" + (why_not.empty() ? "" : " (" + why_not + ")") +
                              ": revoke it with pyoco keys revoke " + key.record.key_id)
                << ". Create the key again where its output is kept.\n";
      return kExitFailed;
    }
    if (!a.json) {
      std::cerr << "pyoco keys create: key " << key.record.key_id << " for tenant "
                << key.record.tenant_id << ", scopes " << joined(key.record.scopes)
                << (a.tags.empty() ? "" : ", tags " + joined(a.tags)) << ", expires "
                << time_text(expires)
                << ".\nThe line above is the key: it is shown this once and stored nowhere "
                   "(only a salted hash is). Send it as X-API-Key or Authorization: Bearer.\n";
    }
    return kExitOk;
  });
}

int run_list(const KeysArgs& a) {
  return with_store("list", a, [&](cluster::ApiKeyStore& store) {
    const auto keys = store.list();
    if (a.json) {
      json::array out;
      for (const auto& r : keys) out.push_back(shown(r));
      std::cout << json::serialize(out) << '\n';
      return kExitOk;
    }
    Table t({"KEY ID", "TENANT", "SCOPES", "TAGS", "STATE", "CREATED", "EXPIRES"});
    for (const auto& r : keys) {
      t.add({r.key_id, r.tenant_id, joined(r.scopes), r.tags.empty() ? "any" : joined(r.tags),
             state_of(r), time_text(r.created_at), time_text(r.expires_at)});
    }
    t.print(std::cout);
    if (keys.empty())
      std::cout << "no API keys: `pyoco keys create --tenant T --scope S` makes one\n";
    return kExitOk;
  });
}

// The ids `keys revoke` tries for what it was given: an id, or a whole
// key `pyoco_<id>.<secret>` (what someone holding a leaked key has), or
// `pyoco_<id>` (its visible part). The secret is never kept or said.
std::vector<std::string> key_ids_in(const std::string& given) {
  if (given.find('.') != std::string::npos) {
    if (const auto key = cluster::parse_api_key(given)) return {key->key_id};
    return {};
  }
  std::vector<std::string> ids{given};
  constexpr std::string_view prefix = "pyoco_";
  if (given.size() > prefix.size() && given.compare(0, prefix.size(), prefix) == 0) {
    ids.push_back(given.substr(prefix.size()));
  }
  return ids;
}

int run_revoke(const KeysArgs& a) {
  return with_store("revoke", a, [&](cluster::ApiKeyStore& store) {
    const std::vector<std::string> ids = key_ids_in(a.key_id);
    if (ids.empty()) {
      std::cerr << "pyoco keys revoke: that is neither a key id nor a whole key "
                   "(pyoco_<id>.<secret>): give the id `pyoco keys list` shows\n";
      return kExitUsage;
    }
    std::optional<cluster::ApiKeyRecord> r;
    for (const std::string& id : ids) {
      if ((r = store.revoke(id))) break;
    }
    if (!r) {
      std::cerr << "pyoco keys revoke: no key " << ids.back()
                << " (`pyoco keys list` shows them)\n";
      return kExitFailed;
    }
    if (a.json) {
      std::cout << json::serialize(shown(*r)) << '\n';
    } else {
      std::cout << "revoked " << r->key_id << " (tenant " << r->tenant_id << ") at "
                << time_text(r->revoked_at) << "; gateways refuse it from now on\n";
    }
    return kExitOk;
  });
}

// pyoco-server's records: one JSON object, an array of them, or one per line.
std::vector<json::object> records_in(const std::string& file) {
  std::string text;
  try {
    text = core::read_regular_file(file, 16 * 1024 * 1024);  // pyoco-server's keys, not a disk
  } catch (const core::FileReadError& e) {
    throw std::invalid_argument(file + ": " + e.what());
  }
  std::vector<json::object> out;
  boost::system::error_code ec;
  json::value v = core::parse_json(text, ec);
  if (!ec) {
    if (v.is_object()) {
      out.push_back(std::move(v.as_object()));
      return out;
    }
    if (v.is_array()) {
      for (json::value& e : v.as_array()) {
        if (!e.is_object()) throw std::invalid_argument(file + ": the array holds a non-object");
        out.push_back(std::move(e.as_object()));
      }
      return out;
    }
    throw std::invalid_argument(file + ": neither a record, an array of them nor JSON lines");
  }
  std::istringstream lines(text);
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json::value l = core::parse_json(line, ec);
    if (ec || !l.is_object()) {
      throw std::invalid_argument(file + ":" + std::to_string(n) + ": not a JSON object");
    }
    out.push_back(std::move(l.as_object()));
  }
  return out;
}

int run_import(const KeysArgs& a) {
  return with_store("import", a, [&](cluster::ApiKeyStore& store) {
    const unsigned default_scopes = scope_bits(a.scopes);
    const auto records = records_in(a.file);
    std::size_t n = 0, imported = 0;
    std::vector<std::string> problems;
    for (const json::object& o : records) {
      ++n;
      cluster::ApiKeyRecord r;
      try {
        r = cluster::api_key_record_from_json(o);
      } catch (const std::invalid_argument& e) {
        problems.push_back("record " + std::to_string(n) + ": " + e.what());
        continue;
      }
      if (r.scopes.empty()) r.scopes = cluster::scope_names(default_scopes);
      if (!store.create(r)) {
        problems.push_back("record " + std::to_string(n) + ": key " + r.key_id +
                           " exists already (left as it is)");
        continue;
      }
      ++imported;
      std::cout << "imported " << r.key_id << " (tenant " << r.tenant_id << ", scopes "
                << joined(r.scopes) << (r.revoked() ? ", revoked" : "") << ")\n";
    }
    for (const std::string& p : problems) std::cerr << "pyoco keys import: " << p << '\n';
    std::cout << imported << " of " << records.size() << " key(s) imported\n";
    return problems.empty() ? kExitOk : kExitFailed;
  });
}

}  // namespace

void add_keys_commands(CLI::App* keys, CommandTable& table) {
  auto a = std::make_shared<KeysArgs>();
  auto nats = [a](CLI::App* cmd) { a->nats.add_to(cmd); };
  const std::string scopes_help =
      "What the key may do, one or more of: " + cluster::all_scope_names() + " (admin: everything)";

  CLI::App* create = keys->add_subcommand(
      "create", "Make an API key for a tenant; prints the key once (only its hash is stored)");
  create->add_option("--tenant", a->tenant, "The tenant whose runs the key sees and submits")
      ->required();
  create->add_option("--scope", a->scopes, scopes_help)
      ->required()
      ->delimiter(',')
      ->type_name("SCOPE");
  create
      ->add_option("--tags", a->tags,
                   "The only tags it may submit runs to (and whose workers it sees); default any")
      ->delimiter(',')
      ->type_name("TAG[,TAG]");
  create
      ->add_option("--expires", a->expires,
                   "When it stops working: a duration from now (30d, 12h, 90m) or a UTC date "
                   "(2027-01-31); default never")
      ->type_name("WHEN");
  create->add_flag("--json", a->json,
                   "One JSON object: key_id, tenant_id, scopes, created_at, expires_at, api_key");
  nats(create);
  table.add(create, [a] { return run_create(*a); });

  CLI::App* list =
      keys->add_subcommand("list", "Show every API key (never a secret), newest first");
  list->add_flag("--json", a->json, "A JSON array of the keys");
  nats(list);
  table.add(list, [a] { return run_list(*a); });

  CLI::App* revoke =
      keys->add_subcommand("revoke", "Revoke an API key: every gateway refuses it within a second");
  revoke
      ->add_option("key_id", a->key_id,
                   "The key's id (`pyoco keys list`), or the whole key pyoco_<id>.<secret>")
      ->required();
  revoke->add_flag("--json", a->json, "The revoked key as a JSON object");
  nats(revoke);
  table.add(revoke, [a] { return run_revoke(*a); });

  CLI::App* import = keys->add_subcommand(
      "import",
      "Import pyoco-server's API key records (its pyoco_auth values): their keys keep working");
  import->add_option("file", a->file, "A record, an array of records, or one record per line")
      ->required()
      ->check(CLI::ExistingFile);
  import
      ->add_option("--scope", a->scopes,
                   "Scopes of imported keys that have none (pyoco-server's never do); default "
                   "runs:read,runs:write")
      ->delimiter(',')
      ->type_name("SCOPE");
  nats(import);
  table.add(import, [a] {
    if (a->scopes.empty()) a->scopes = {"runs:read", "runs:write"};
    return run_import(*a);
  });
}

}  // namespace pyoco::cli
