# pyoco_add_plugin(<name> SOURCES <src>... MANIFEST <plugin.toml>
#                  [OUTPUT_DIRECTORY <dir>] [INSTALL_DESTINATION <dir>]
#                  [COMPONENT <component>] [NO_INSTALL])
#
# Builds a pyoco plugin: a MODULE library `libpyoco_<name>.so` with hidden
# visibility (only the entry point is exported) and no undefined symbols,
# with its plugin.toml beside it. The directory holding
# both is a plugin directory: point `pyoco --plugin-path` at it or at its
# parent.
#
#   OUTPUT_DIRECTORY     where the plugin directory is made in the build tree
#                        (default: <current binary dir>/<name>)
#   INSTALL_DESTINATION  where `cmake --install` puts it
#                        (default: lib/pyoco/plugins/<name>)
#   COMPONENT            the install component it belongs to, for
#                        `cmake --install --component` and CPack packages
#                        (default: CMake's, "Unspecified")
#   NO_INSTALL           build it only: no install rule (a plugin for tests
#                        or benchmarks)
#
# The source manifest holds [plugin] and [plugin.platform] only. After each
# link, `pyoco plugins manifest` loads the library and writes the plugin
# directory's plugin.toml: the source manifest followed by a [[tasks]] table
# for each task the library registers, so a task's inputs, outputs and types
# are written once, in its code. A source manifest with [[tasks]] fails the
# build, as does a library that does not load or register. A plugin.toml
# edited by hand in the plugin directory is put back by the next build.
#
# The pyoco executable that does it: the `pyoco` target when building pyoco
# itself, else PYOCO_EXECUTABLE, else the pyoco installed with this SDK,
# else one on PATH.
#
# The manifest's [plugin] name and version are compiled into the library
# (PYOCO_PLUGIN_NAME, PYOCO_PLUGIN_VERSION) so `pyoco plugins lint` can tell
# a stale build from its manifest.
include_guard(GLOBAL)

# Where this file is: the SDK's cmake directory, installed
# (<prefix>/lib[/<arch>]/cmake/PyocoSDK) or in pyoco's build tree.
set(_PYOCO_PLUGIN_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}")

function(_pyoco_executable out)
  if(TARGET pyoco)
    set(${out} "$<TARGET_FILE:pyoco>" PARENT_SCOPE)
    return()
  endif()
  if(NOT PYOCO_EXECUTABLE)
    find_program(PYOCO_EXECUTABLE pyoco
      HINTS "${_PYOCO_PLUGIN_CMAKE_DIR}/bin" "${_PYOCO_PLUGIN_CMAKE_DIR}/../../../bin"
            "${_PYOCO_PLUGIN_CMAKE_DIR}/../../../../bin"
      NO_DEFAULT_PATH)
    find_program(PYOCO_EXECUTABLE pyoco)
  endif()
  if(NOT PYOCO_EXECUTABLE)
    message(FATAL_ERROR "pyoco_add_plugin: no pyoco executable found; it writes the [[tasks]] "
                        "of plugin.toml from the built library. Install pyoco with this SDK, or "
                        "pass -DPYOCO_EXECUTABLE=/path/to/pyoco")
  endif()
  set(${out} "${PYOCO_EXECUTABLE}" PARENT_SCOPE)
endfunction()

function(_pyoco_manifest_plugin_field manifest field out)
  file(STRINGS "${manifest}" lines)
  set(in_plugin FALSE)
  set(value "")
  foreach(line IN LISTS lines)
    if(line MATCHES "^[ \t]*\\[([^]]*)\\]")
      string(STRIP "${CMAKE_MATCH_1}" table)
      if(table STREQUAL "plugin")
        set(in_plugin TRUE)
      else()
        set(in_plugin FALSE)
      endif()
    elseif(in_plugin AND line MATCHES "^[ \t]*${field}[ \t]*=[ \t]*\"([^\"]*)\"")
      set(value "${CMAKE_MATCH_1}")
      break()
    endif()
  endforeach()
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

function(pyoco_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "NO_INSTALL" "MANIFEST;OUTPUT_DIRECTORY;INSTALL_DESTINATION;COMPONENT"
                        "SOURCES")
  if(NOT name MATCHES "^[a-z][a-z0-9_]*$")
    message(FATAL_ERROR "pyoco_add_plugin: plugin name '${name}' must match [a-z][a-z0-9_]*")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "pyoco_add_plugin(${name}): SOURCES is required")
  endif()
  if(NOT ARG_MANIFEST)
    message(FATAL_ERROR "pyoco_add_plugin(${name}): MANIFEST is required (the plugin.toml)")
  endif()
  get_filename_component(manifest "${ARG_MANIFEST}" ABSOLUTE)
  if(NOT EXISTS "${manifest}")
    message(FATAL_ERROR "pyoco_add_plugin(${name}): manifest '${manifest}' does not exist")
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${manifest}")

  _pyoco_manifest_plugin_field("${manifest}" name manifest_name)
  _pyoco_manifest_plugin_field("${manifest}" version manifest_version)
  if(NOT manifest_name STREQUAL name)
    message(FATAL_ERROR "pyoco_add_plugin(${name}): ${manifest} says [plugin] name = \"${manifest_name}\"; "
                        "the two must agree")
  endif()

  set(out_dir "${ARG_OUTPUT_DIRECTORY}")
  if(NOT out_dir)
    set(out_dir "${CMAKE_CURRENT_BINARY_DIR}/${name}")
  endif()
  set(install_dir "${ARG_INSTALL_DESTINATION}")
  if(NOT install_dir)
    set(install_dir "lib/pyoco/plugins/${name}")
  endif()

  add_library(${name} MODULE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE PyocoSDK::sdk)
  target_compile_definitions(${name} PRIVATE
    PYOCO_PLUGIN_NAME="${manifest_name}" PYOCO_PLUGIN_VERSION="${manifest_version}")
  # Export the entry point and nothing else: hidden visibility alone leaves
  # the standard library's template instances (declared default-visible by
  # its headers) in the dynamic symbol table.
  set(version_script "${CMAKE_CURRENT_BINARY_DIR}/pyoco_plugin_${name}.map")
  file(CONFIGURE OUTPUT "${version_script}"
       CONTENT "{\n  global: pyoco_plugin_entry;\n  local: *;\n};\n")
  target_link_options(${name} PRIVATE "LINKER:--no-undefined" "LINKER:--version-script=${version_script}")
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS "${version_script}")
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME "pyoco_${name}"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${out_dir}")
  _pyoco_executable(pyoco_exe)
  if(TARGET pyoco)
    add_dependencies(${name} pyoco)
  endif()
  # An edited source manifest relinks, and so rewrites plugin.toml.
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS "${manifest}")
  # The manifest is written beside the build files and copied into the
  # plugin directory. Each build of the plugin compares the two and puts
  # the written one back when the copy differs (edited by hand, removed),
  # though nothing relinks: one `cmake -P` per build, no pyoco run.
  set(written "${CMAKE_CURRENT_BINARY_DIR}/pyoco_plugin_${name}.toml")
  set(refresh_script "${CMAKE_CURRENT_BINARY_DIR}/pyoco_plugin_${name}_manifest.cmake")
  file(CONFIGURE OUTPUT "${refresh_script}" CONTENT
       "if(EXISTS \"${written}\")\n  file(MAKE_DIRECTORY \"${out_dir}\")\n  file(COPY_FILE \"${written}\" \"${out_dir}/plugin.toml\" ONLY_IF_DIFFERENT)\nendif()\n")
  add_custom_target(pyoco_plugin_${name}_manifest
    COMMAND "${CMAKE_COMMAND}" -P "${refresh_script}"
    VERBATIM)
  add_dependencies(${name} pyoco_plugin_${name}_manifest)
  add_custom_command(TARGET ${name} POST_BUILD
    COMMAND "${pyoco_exe}" plugins manifest "${manifest}" --library "$<TARGET_FILE:${name}>"
            --output "${written}"
    COMMAND "${CMAKE_COMMAND}" -P "${refresh_script}"
    COMMENT "pyoco plugin ${name}: ${out_dir}"
    VERBATIM)
  if(ARG_NO_INSTALL)
    return()
  endif()
  set(component)
  if(ARG_COMPONENT)
    set(component COMPONENT "${ARG_COMPONENT}")
  endif()
  install(TARGETS ${name} LIBRARY DESTINATION "${install_dir}" ${component})
  install(FILES "${out_dir}/plugin.toml" DESTINATION "${install_dir}" ${component})
endfunction()
