# Read by cpack when it packages (CPACK_PROJECT_CONFIG_FILE, packaging/packaging.cmake):
# what the build in this folder ties the package to.
if(CPACK_GENERATOR STREQUAL "DEB")
  if(CPACK_KVSCOPE_NATIVE)
    message(WARNING "kvscope: this build uses -march=native, so the package runs only on "
                    "CPUs like this one; for lab machines use `cmake --preset deb` "
                    "(-DKVSCOPE_NATIVE=OFF -DKVSCOPE_CUDA=OFF)")
  endif()
  if(CPACK_KVSCOPE_CUDA_BUILT)
    # NVIDIA's CUDA runtime and cuBLAS belong to no Debian package, so dpkg-shlibdeps
    # cannot name a dependency for them and would stop: name the others here, and say
    # that the package needs the CUDA runtime where it is installed.
    set(_kv_dir "${CPACK_TOPLEVEL_DIRECTORY}/kvscope-shlibdeps")
    file(MAKE_DIRECTORY "${_kv_dir}/debian")
    file(WRITE "${_kv_dir}/debian/control" "Source: kvscope\n\nPackage: kvscope\nArchitecture: any\n")
    execute_process(COMMAND dpkg-shlibdeps -O --ignore-missing-info ${CPACK_KVSCOPE_BINARIES}
                    WORKING_DIRECTORY "${_kv_dir}" OUTPUT_VARIABLE _kv_out ERROR_VARIABLE _kv_err
                    RESULT_VARIABLE _kv_rc)
    if(NOT _kv_rc EQUAL 0 OR NOT _kv_out MATCHES "shlibs:Depends=([^\n]*)")
      message(FATAL_ERROR "kvscope: dpkg-shlibdeps failed on ${CPACK_KVSCOPE_BINARIES}: ${_kv_err}")
    endif()
    set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
    string(JOIN ", " CPACK_DEBIAN_PACKAGE_DEPENDS ${CMAKE_MATCH_1} ${CPACK_DEBIAN_PACKAGE_DEPENDS})
    message(WARNING "kvscope: this build holds the CUDA backend; its package needs NVIDIA's CUDA "
                    "runtime and cuBLAS (not Debian packages) on every machine it is installed on; "
                    "for lab machines use `cmake --preset deb` (-DKVSCOPE_CUDA=OFF)")
  endif()
endif()
