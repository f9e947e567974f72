# Every dependency comes from a Debian 12 package (tools/setup.sh installs
# them). Packages that ship a CMake config are found in CONFIG mode.
# cmake/PyocoConfig.cmake.in finds the ones the runtime libraries link again,
# for a program that embeds them: keep the two in step.
find_package(Threads REQUIRED)
find_package(Boost 1.81 CONFIG REQUIRED
  COMPONENTS json url log filesystem unit_test_framework)
find_package(tomlplusplus 3 CONFIG REQUIRED)
find_package(yaml-cpp 0.7 CONFIG REQUIRED)
find_package(CLI11 2 CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(OpenSSL 3 REQUIRED COMPONENTS Crypto SSL)

# cnats 3.4's CMake config also declares a static library that Debian does
# not ship, which makes find_package(cnats) fail; pkg-config is reliable.
find_package(PkgConfig REQUIRED)
pkg_check_modules(NATS REQUIRED IMPORTED_TARGET libnats>=3.4)
add_library(pyoco::nats ALIAS PkgConfig::NATS)
