# Installation and the Debian package.
#
#   cmake --build build --target svcproxy svcproxy_help
#   cmake --install build --prefix /usr/local    # binary, systemd unit, help text, examples
#   (cd build && cpack -G DEB)                   # svcproxy_<version>_<arch>.deb
#
# Installing builds nothing: build svcproxy and svcproxy_help first (or
# everything). This keeps `cpack` from building the tests and benchmarks.
include(GNUInstallDirs)
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

install(TARGETS svcproxy RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The systemd unit names /usr/bin/svcproxy (the package's path); an install
# elsewhere gets its own path written in. CMAKE_INSTALL_PREFIX is read at
# install time: cpack installs with its packaging prefix (/usr).
set(SVCPROXY_UNIT_STAGING ${CMAKE_BINARY_DIR}/packaging/svcproxy.service)
install(CODE "
  file(READ \"${PROJECT_SOURCE_DIR}/deploy/svcproxy.service\" unit)
  string(REPLACE \"/usr/bin/svcproxy\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/svcproxy\" unit \"\${unit}\")
  string(REPLACE \"/usr/share/doc/svcproxy\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\" unit \"\${unit}\")
  file(WRITE \"${SVCPROXY_UNIT_STAGING}\" \"\${unit}\")
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES \"${SVCPROXY_UNIT_STAGING}\")
")

# A man-style reference generated from the binary's own --help (the top
# level and every subcommand), so it never drifts from the flags.
set(SVCPROXY_HELP_TEXT ${CMAKE_BINARY_DIR}/svcproxy-help.txt)
set(SVCPROXY_HELP_SCRIPT ${CMAKE_BINARY_DIR}/packaging/svcproxy-help.cmake)
file(WRITE ${SVCPROXY_HELP_SCRIPT} [=[
execute_process(COMMAND "${BIN}" --help OUTPUT_VARIABLE top RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${BIN} --help failed (${rc})")
endif()
execute_process(COMMAND "${BIN}" --version OUTPUT_VARIABLE version OUTPUT_STRIP_TRAILING_WHITESPACE)
set(text "SVCPROXY(8)                      System Manager's Manual                      SVCPROXY(8)\n\n")
string(APPEND text "NAME\n       svcproxy - a Kubernetes service proxy for Linux nodes (nftables dataplane)\n\n")
string(APPEND text "SYNOPSIS\n       svcproxy SUBCOMMAND [OPTIONS]\n\n")
string(APPEND text "DESCRIPTION\n       svcproxy programs this node's nftables so Kubernetes Services work, with\n")
string(APPEND text "       kube-proxy's semantics, flags and configuration file (--config, a\n")
string(APPEND text "       KubeProxyConfiguration). Run as a systemd service (svcproxy.service) or as a\n")
string(APPEND text "       DaemonSet (examples/daemonset.yaml in this directory).\n\n")
string(APPEND text "OVERVIEW (svcproxy --help)\n\n${top}\n")
# Subcommands: the lines under "Subcommands:" in the top-level help.
string(REGEX MATCH "Subcommands:\n.*" listing "${top}")
string(REGEX MATCHALL "\n  [a-z][a-z-]*" names "${listing}")
foreach(entry IN LISTS names)
  string(STRIP "${entry}" name)
  execute_process(COMMAND "${BIN}" ${name} --help OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${BIN} ${name} --help failed (${rc})")
  endif()
  string(TOUPPER "${name}" title)
  string(APPEND text "COMMAND ${title} (svcproxy ${name} --help)\n\n${out}\n")
endforeach()
string(APPEND text "SEE ALSO\n       kube-proxy(8), nft(8), conntrack(8)\n\n${version}\n")
file(WRITE "${OUT}" "${text}")
]=])
add_custom_command(OUTPUT ${SVCPROXY_HELP_TEXT}
  COMMAND ${CMAKE_COMMAND} -DBIN=$<TARGET_FILE:svcproxy> -DOUT=${SVCPROXY_HELP_TEXT} -P ${SVCPROXY_HELP_SCRIPT}
  DEPENDS svcproxy ${SVCPROXY_HELP_SCRIPT}
  COMMENT "Generating svcproxy-help.txt from svcproxy --help"
  VERBATIM)
add_custom_target(svcproxy_help ALL DEPENDS ${SVCPROXY_HELP_TEXT})
install(FILES ${SVCPROXY_HELP_TEXT} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/etc/config.yaml ${PROJECT_SOURCE_DIR}/deploy/daemonset.yaml
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# ---- cpack -G DEB -------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME svcproxy)
set(CPACK_PACKAGE_VENDOR svcproxy)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "svcproxy maintainers <svcproxy-maintainers@lists.example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Kubernetes service proxy for Linux nodes (nftables dataplane)")
set(CPACK_PACKAGE_DESCRIPTION
    "svcproxy programs a node's nftables so Kubernetes Services work, with kube-proxy's semantics, flags and KubeProxyConfiguration file. It watches the API server (or manifest files), syncs partially on changes and fully every sync period, serves /healthz, /livez and /metrics, and leaves the rules in place across restarts.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/svcproxy/svcproxy")
# Debian 12 (bookworm) package names. Every library the binary links
# (DT_NEEDED) must be here: tests/e2e/test_deploy.py checks it with dpkg -S.
# libssl3: the API server client (watch/) speaks TLS. libprometheus-cpp-core1.0:
# /metrics (proxy/metrics.cc).
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6 (>= 2.36), libstdc++6 (>= 12), libgcc-s1, libnftnl11 (>= 1.2.4), libmnl0 (>= 1.0.4), libnetfilter-conntrack3 (>= 1.0.9), libyaml-cpp0.7, libsimdjson14, libprometheus-cpp-core1.0, libssl3, nftables")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/deploy/debian/postinst;${PROJECT_SOURCE_DIR}/deploy/debian/prerm;${PROJECT_SOURCE_DIR}/deploy/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
