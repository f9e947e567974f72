// Debian's headless Chromium driven through chromedriver (W3C WebDriver
// over HTTP on a loopback port the test picks): enough to load a page,
// find, read and click elements, run a script, and save screenshots.
#pragma once

#include <pyoco/server/client.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "child.hpp"
#include "ports.hpp"
#include "temp_dir.hpp"

namespace pyoco::testing {

class Browser {
 public:
  // Starts chromedriver and a headless Chromium of `width` x `height`.
  explicit Browser(int width = 1280, int height = 800) {
    port_ = free_loopback_port();
    driver_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/bin/chromedriver", "--port=" + std::to_string(port_)},
        std::map<std::string, std::string>{}, dir_.path());
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      try {
        if (call(boost::beast::http::verb::get, "/status").at("ready").as_bool()) break;
      } catch (const std::exception&) {
      }
      BOOST_REQUIRE_MESSAGE(std::chrono::steady_clock::now() < until,
                            "chromedriver never got ready: " << driver_->err());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const std::string size =
        "--window-size=" + std::to_string(width) + "," + std::to_string(height);
    boost::json::object caps{
        {"capabilities",
         {{"alwaysMatch",
           {{"browserName", "chrome"},
            {"goog:chromeOptions",
             {{"binary", "/usr/bin/chromium"},
              {"args",
               {"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--hide-scrollbars",
                "--user-data-dir=" + (dir_.path() / "profile").string(), size}}}}}}}}};
    session_ = std::string(
        call(boost::beast::http::verb::post, "/session", caps).at("sessionId").as_string());
  }

  ~Browser() {
    try {
      if (!session_.empty()) call(boost::beast::http::verb::delete_, "/session/" + session_, {});
    } catch (const std::exception&) {
    }
  }

  void go(const std::string& url) {
    command(boost::beast::http::verb::post, "/url", {{"url", url}});
  }

  // A script's result: `return ...;` in its body, `arguments[i]` the args.
  boost::json::value run(const std::string& script, boost::json::array args = {}) {
    return command(boost::beast::http::verb::post, "/execute/sync",
                   {{"script", script}, {"args", std::move(args)}});
  }

  // Waits until `check` is true (each try a fresh look); false at the deadline.
  bool until(const std::function<bool()>& check,
             std::chrono::milliseconds deadline = std::chrono::seconds(20)) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < end) {
      try {
        if (check()) return true;
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // The first element `css` selects (a WebDriver element reference), if any.
  std::optional<boost::json::value> find(const std::string& css) {
    boost::json::value found = command(boost::beast::http::verb::post, "/elements",
                                       {{"using", "css selector"}, {"value", css}});
    if (found.as_array().empty()) return std::nullopt;
    return found.as_array().front();
  }

  std::string text(const std::string& css) {
    const boost::json::value v =
        run("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            {boost::json::value(css)});
    return v.is_string() ? std::string(v.as_string()) : std::string();
  }

  std::size_t count(const std::string& css) {
    return static_cast<std::size_t>(
        run("return document.querySelectorAll(arguments[0]).length;", {boost::json::value(css)})
            .to_number<std::int64_t>());
  }

  // A real click (WebDriver's, at the element's place), not a script's.
  // A live page may replace the element between finding and clicking it:
  // then it is found again.
  void click(const std::string& css) { act(css, "/click", {}); }

  void type(const std::string& css, const std::string& keys) {
    act(css, "/value", {{"text", keys}});
  }

  void resize(int width, int height) {
    command(boost::beast::http::verb::post, "/window/rect", {{"width", width}, {"height", height}});
  }

  // prefers-color-scheme as the page sees it ("light" or "dark").
  void color_scheme(const std::string& scheme) {
    command(boost::beast::http::verb::post, "/goog/cdp/execute",
            {{"cmd", "Emulation.setEmulatedMedia"},
             {"params", {{"features", {{{"name", "prefers-color-scheme"}, {"value", scheme}}}}}}});
  }

  // The viewport as a PNG at `file` (its directory made).
  void screenshot(const std::filesystem::path& file) {
    const boost::json::value v = command(boost::beast::http::verb::get, "/screenshot", {});
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << decode_base64(std::string(v.as_string()));
  }

 private:
  void act(const std::string& css, const std::string& what, const boost::json::object& body) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      const auto e = find(css);
      BOOST_REQUIRE_MESSAGE(e, "nothing at " << css);
      try {
        command(boost::beast::http::verb::post, "/element/" + element_id(*e) + what, body);
        return;
      } catch (const std::runtime_error& x) {
        if (std::string(x.what()).find("stale element") == std::string::npos ||
            std::chrono::steady_clock::now() > end) {
          throw;
        }
      }
    }
  }

  static std::string element_id(const boost::json::value& e) {
    return std::string(e.as_object().at("element-6066-11e4-a52e-4f735466cecf").as_string());
  }

  boost::json::value command(boost::beast::http::verb method, const std::string& path,
                             boost::json::object body) {
    return call(method, "/session/" + session_ + path,
                method == boost::beast::http::verb::get
                    ? std::nullopt
                    : std::optional<boost::json::object>(std::move(body)));
  }

  // chromedriver's answer's "value"; throws naming its error.
  boost::json::value call(boost::beast::http::verb method, const std::string& path,
                          std::optional<boost::json::object> body = std::nullopt) {
    const auto res = server::http_call("http://127.0.0.1:" + std::to_string(port_), method, path,
                                       body ? boost::json::serialize(*body) : std::string(),
                                       "application/json", {}, std::chrono::seconds(60));
    if (res.status >= 400) {
      throw std::runtime_error("webdriver " + path + ": " + res.body.substr(0, 400));
    }
    boost::json::value v = boost::json::parse(res.body);
    return v.as_object().at("value");
  }

  static std::string decode_base64(const std::string& in) {
    static const std::string chars =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    int value = 0, bits = -8;
    for (const char c : in) {
      const std::size_t i = chars.find(c);
      if (i == std::string::npos) continue;
      value = (value << 6) + static_cast<int>(i);
      bits += 6;
      if (bits >= 0) {
        out.push_back(static_cast<char>((value >> bits) & 0xff));
        bits -= 8;
      }
    }
    return out;
  }

  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> driver_;
  std::string session_;
};

}  // namespace pyoco::testing
