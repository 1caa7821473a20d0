# What `cmake --install` and the Debian packages (CPack) put where. Every destination is
# relative to the install prefix, so `cmake --install build --prefix P` honours P.
# Components: lib (libm2mhsm.so.0), dev (headers, libm2mhsm.so, pkg-config and CMake
# package files), provider (the OpenSSL module), tools (the CLI and the three programs).

# OpenSSL finds a provider module in its modules directory (OPENSSL_MODULES, or
# -provider-path, or an absolute `module =` in openssl.cnf): under the prefix by default,
# which is Debian's own directory when the prefix is /usr.
set(M2MHSM_OSSL_MODULES_DIR "${CMAKE_INSTALL_LIBDIR}/ossl-modules" CACHE STRING
    "Where the provider module m2mhsm.so is installed (relative: under the prefix)")

install(TARGETS m2mhsm_shared EXPORT m2mhsmTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT lib NAMELINK_COMPONENT dev)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/m2mhsm DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT dev)
install(TARGETS m2mhsm_provider_module LIBRARY DESTINATION ${M2MHSM_OSSL_MODULES_DIR}
        COMPONENT provider)
install(TARGETS m2mhsm-cli m2m-mef m2m-maf m2m-eb m2m-enrolee RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        COMPONENT tools)
install(FILES ${PROJECT_SOURCE_DIR}/hsm-config/openssl-m2mhsm.cnf
              ${PROJECT_SOURCE_DIR}/hsm-config/examples/mef.json
              ${PROJECT_SOURCE_DIR}/hsm-config/examples/maf.json
              ${PROJECT_SOURCE_DIR}/hsm-config/examples/eb.json
              ${PROJECT_SOURCE_DIR}/hsm-config/examples/enrolee.json
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/m2mhsm-tools/examples COMPONENT tools)
# The services' units and their user (docs/deployment-hsm.md); not enabled or started.
install(FILES ${PROJECT_SOURCE_DIR}/hsm-config/systemd/m2m-mef.service
              ${PROJECT_SOURCE_DIR}/hsm-config/systemd/m2m-maf.service
              ${PROJECT_SOURCE_DIR}/hsm-config/systemd/m2m-eb.service
        DESTINATION lib/systemd/system COMPONENT tools)
install(FILES ${PROJECT_SOURCE_DIR}/hsm-config/systemd/m2mhsm.sysusers.conf
        DESTINATION lib/sysusers.d RENAME m2mhsm.conf COMPONENT tools)

# pkg-config: the prefix is found from where the .pc file lies (${pcfiledir}), so a tree
# installed under any prefix, or unpacked anywhere, describes itself correctly.
file(RELATIVE_PATH m2mhsm_pc_up "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" m2mhsm_pc_up "${m2mhsm_pc_up}")
configure_file(${PROJECT_SOURCE_DIR}/src/m2mhsm.pc.in ${PROJECT_BINARY_DIR}/m2mhsm.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/m2mhsm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT dev)

# CMake: find_package(m2mhsm) gives the imported target m2mhsm::m2mhsm.
include(CMakePackageConfigHelpers)
set(m2mhsm_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/m2mhsm)
install(EXPORT m2mhsmTargets NAMESPACE m2mhsm:: DESTINATION ${m2mhsm_cmake_dir} COMPONENT dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/src/m2mhsmConfig.cmake.in
  ${PROJECT_BINARY_DIR}/m2mhsmConfig.cmake INSTALL_DESTINATION ${m2mhsm_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/m2mhsmConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/m2mhsmConfig.cmake
              ${PROJECT_BINARY_DIR}/m2mhsmConfigVersion.cmake
        DESTINATION ${m2mhsm_cmake_dir} COMPONENT dev)
set_target_properties(m2mhsm_shared PROPERTIES EXPORT_NAME m2mhsm)
target_include_directories(m2mhsm_shared INTERFACE $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

# Debian packages with CPack's DEB generator: one per component, dependencies on Debian's
# libraries computed by dpkg-shlibdeps (docs/packaging.md says why CPack, not debhelper).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME m2mhsm)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "m2mhsm maintainers <maintainers@m2mhsm.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "oneM2M TS-0003 remote-provisioning keys in a PKCS#11 token")
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL lib dev provider tools)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_LIB_PACKAGE_NAME libm2mhsm0)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libm2mhsm-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libm2mhsm0 (= ${PROJECT_VERSION}), libssl-dev (>= 3.0), libp11-kit-dev")
set(CPACK_DEBIAN_PROVIDER_PACKAGE_NAME m2mhsm-provider)
set(CPACK_DEBIAN_PROVIDER_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME m2mhsm-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_LIB_DESCRIPTION "oneM2M TS-0003 keys in a PKCS#11 token: shared library")
set(CPACK_COMPONENT_DEV_DESCRIPTION "oneM2M TS-0003 keys in a PKCS#11 token: development files")
set(CPACK_COMPONENT_PROVIDER_DESCRIPTION
    "OpenSSL 3 provider whose TLS-PSK keys stay in a PKCS#11 token")
set(CPACK_COMPONENT_TOOLS_DESCRIPTION
    "m2mhsm admin CLI, m2m-mef, m2m-maf and the m2m-enrolee reference device")
include(CPack)
