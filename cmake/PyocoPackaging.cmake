# Debian packages, made by `cpack -G DEB` in the build directory:
#
#   pyoco      install component `runtime`: the binary, the first-party
#              plugins, the plugin templates, the user docs, the systemd
#              units and /etc/pyoco/*.env (docs/deploy.md)
#   pyoco-dev  install component `dev`: the SDK headers and the PyocoSDK
#              and Pyoco CMake packages with the runtime's static libraries
#
# Every install() rule names one of the two components: a rule without one
# would make a third package, pyoco-Unspecified (tests/e2e/deb_package_test
# checks there are two).
set(PYOCO_PACKAGING_DIR "${PROJECT_SOURCE_DIR}/packaging")

# What makes the machine run pyoco as a service. Outside a package these
# would land under any --prefix (units naming /usr/bin/pyoco, files in the
# real /etc), so a plain `cmake --install` leaves them out
# (EXCLUDE_FROM_ALL); cpack installs by component, which includes them.
install(FILES "${PYOCO_PACKAGING_DIR}/systemd/pyoco-server.service"
              "${PYOCO_PACKAGING_DIR}/systemd/pyoco-worker@.service"
        DESTINATION lib/systemd/system COMPONENT runtime EXCLUDE_FROM_ALL)
# Root only: they hold NATS passwords and the keys' pepper; systemd reads
# them as root.
install(FILES "${PYOCO_PACKAGING_DIR}/etc/server.env" "${PYOCO_PACKAGING_DIR}/etc/worker.env"
        DESTINATION /etc/pyoco PERMISSIONS OWNER_READ OWNER_WRITE
        COMPONENT runtime EXCLUDE_FROM_ALL)

set(CPACK_PACKAGE_NAME pyoco)
set(CPACK_PACKAGE_VENDOR "pyoco team")
set(CPACK_PACKAGE_CONTACT "pyoco team <pyoco@localhost>")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
# Empty, not project()'s description: CPack would put it before each
# package's own description, so both packages would share one synopsis line.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Packages carry no debug info: the binary is 160 MB with it, 10 without.
set(CPACK_STRIP_FILES ON)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # <name>_<version>-<release>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(_pyoco_deb_version "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")
# dpkg-shlibdeps (dpkg-dev) names the libraries the binary and the plugins
# link to; the Depends below are what it cannot see in ELF files.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME pyoco)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "small, fast workflow engine with plugin tasks
pyoco runs flows (a DAG in flow.yaml) of tasks that plugins provide, on
one machine or, in cluster mode, behind an HTTP gateway on NATS JetStream
with pulling workers. This package has the pyoco command (and
pyoco-cluster, which runs its cluster commands), the first-party plugins
and the systemd units of the gateway and the workers.")
# postinst makes the pyoco user with adduser.
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "adduser")
# Cluster mode needs a NATS server, here (`pyoco server --with-nats`) or
# elsewhere; local runs need none.
set(CPACK_DEBIAN_RUNTIME_PACKAGE_RECOMMENDS "nats-server")
# conffiles: dpkg keeps an edited /etc/pyoco/*.env across upgrades.
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
    "${PYOCO_PACKAGING_DIR}/debian/conffiles" "${PYOCO_PACKAGING_DIR}/debian/postinst"
    "${PYOCO_PACKAGING_DIR}/debian/prerm" "${PYOCO_PACKAGING_DIR}/debian/postrm")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME pyoco-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_DESCRIPTION "pyoco SDK and runtime libraries for C++
Headers and CMake packages to write pyoco plugins (find_package(PyocoSDK),
pyoco_add_plugin) and to embed the engine in a program
(find_package(Pyoco), pyoco::runtime, static libraries).")
# Exactly this pyoco: pyoco_add_plugin runs it to write plugin.toml, and
# the headers must match the binary's ABI. Then what cmake/PyocoConfig.cmake.in
# finds with find_dependency(): Boost (json, log, filesystem), tomlplusplus,
# yaml-cpp, SQLite3, OpenSSL; Threads comes with the compiler.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "pyoco (= ${_pyoco_deb_version}), libboost1.81-dev, libboost-json1.81-dev, \
libboost-log1.81-dev, libboost-filesystem1.81-dev, libtomlplusplus-dev, libyaml-cpp-dev, \
libsqlite3-dev, libssl-dev")
set(CPACK_DEBIAN_DEV_PACKAGE_RECOMMENDS "cmake, g++")

include(CPack)
