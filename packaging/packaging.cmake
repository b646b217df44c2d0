# The .deb for lab machines (README, "Installing on lab machines"): kvscope,
# kvscope-cli, the bundled models under share/kvscope, a desktop entry and an icon.
# `cmake --preset deb && cmake --build --preset deb && cpack --preset deb` makes the
# portable, CPU-only package; cpack in any other build folder packages that build
# (packaging/cpack-options.cmake says what that build ties the package to).
# The binaries find the models relative to themselves (kv::default_model_dir:
# bin/../share/kvscope/models), so the package works under /usr and unpacked anywhere.

install(FILES assets/corpus.txt DESTINATION share/kvscope)  # for `kvscope-cli train`
install(FILES README.md DESTINATION share/doc/kvscope)
if(KVSCOPE_UI)
  install(FILES packaging/kvscope.desktop DESTINATION share/applications)
  install(FILES packaging/kvscope.svg DESTINATION share/icons/hicolor/scalable/apps)
  install(FILES packaging/kvscope-48.png DESTINATION share/icons/hicolor/48x48/apps RENAME kvscope.png)
  install(FILES packaging/kvscope-256.png DESTINATION share/icons/hicolor/256x256/apps RENAME kvscope.png)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME kvscope)
set(CPACK_PACKAGE_VENDOR kvscope)
set(CPACK_PACKAGE_CONTACT "kvscope maintainers <kvscope@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "see how a transformer's KV cache works, step by step")
set(CPACK_PACKAGE_DESCRIPTION
    "kvscope runs a small GPT-2-style model and draws every prefill and decode step: the \
query, key and value vectors, the cache growing row by row, the attention weights and the \
work recomputed with and without the cache. kvscope-cli runs the same steps headless. \
The bundled models (tiny-gpt, tiny-gqa, tiny-draft, tiny-llama, tiny-llama-draft, tiny-mla) are in /usr/share/kvscope/models.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION education)
# Shared libraries from dpkg-shlibdeps; the fonts the window opens by path (ui/look/fonts.cpp).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
if(KVSCOPE_UI)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "fonts-dejavu-core")
  set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "fonts-lohit-deva, fonts-droid-fallback")
endif()

# A build with the CUDA backend links NVIDIA's runtime from outside the system's
# library folders: installed binaries keep that folder in their RPATH, as the build
# tree's do, so an install or an unpacked package finds it where ld.so.conf does not.
if(TARGET kvcuda)
  foreach(_kv_exe kvscope-cli kvscope)
    if(TARGET ${_kv_exe})
      set_target_properties(${_kv_exe} PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
    endif()
  endforeach()
endif()

# What packaging-time checks need to know about this build.
if(KVSCOPE_NATIVE AND KVSCOPE_HAS_MARCH_NATIVE)
  set(CPACK_KVSCOPE_NATIVE ON)
endif()
if(TARGET kvcuda)
  set(CPACK_KVSCOPE_CUDA_BUILT ON)
endif()
set(CPACK_KVSCOPE_BINARIES "${CMAKE_BINARY_DIR}/app/kvscope-cli")
if(KVSCOPE_UI)
  list(APPEND CPACK_KVSCOPE_BINARIES "${CMAKE_BINARY_DIR}/app/kvscope")
endif()
set(CPACK_PROJECT_CONFIG_FILE "${CMAKE_SOURCE_DIR}/packaging/cpack-options.cmake")
include(CPack)
