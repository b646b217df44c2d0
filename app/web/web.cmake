# The browser build (scripts/web, preset "web"; docs/design.md "In the browser"):
# Emscripten compiles the same sources to WebAssembly + WebGL 2. Included from the top
# CMakeLists.txt in place of its find_package calls: the header-only libraries come
# from Debian's packages through links (never all of /usr/include, whose C library is
# not the browser's), Dear ImGui from its Debian source package (KVSCOPE_IMGUI_DIR,
# fetched by scripts/web), GLFW and WebGL from Emscripten. No threads (kv::kHaveThreads).
if(NOT KVSCOPE_IMGUI_DIR OR NOT EXISTS "${KVSCOPE_IMGUI_DIR}/imgui.h")
  message(FATAL_ERROR "KVSCOPE_IMGUI_DIR='${KVSCOPE_IMGUI_DIR}' holds no imgui.h: run scripts/web, "
                      "which fetches Dear ImGui 1.86's source with apt-get source imgui")
endif()

set(_kv_host "${CMAKE_BINARY_DIR}/host-include")
foreach(_dir nlohmann CLI stb)
  if(NOT EXISTS "/usr/include/${_dir}")
    message(FATAL_ERROR "/usr/include/${_dir} is missing: install nlohmann-json3-dev, libcli11-dev and libstb-dev")
  endif()
  file(MAKE_DIRECTORY "${_kv_host}")
  file(CREATE_LINK "/usr/include/${_dir}" "${_kv_host}/${_dir}" SYMBOLIC)
endforeach()
add_library(Eigen3::Eigen INTERFACE IMPORTED)
target_include_directories(Eigen3::Eigen SYSTEM INTERFACE /usr/include/eigen3)
add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
target_include_directories(nlohmann_json::nlohmann_json SYSTEM INTERFACE "${_kv_host}")
add_library(CLI11::CLI11 INTERFACE IMPORTED)
target_include_directories(CLI11::CLI11 SYSTEM INTERFACE "${_kv_host}")
add_library(Threads::Threads INTERFACE IMPORTED)  # nothing to link: no thread starts

# kv::Error is thrown and caught across the code: Emscripten's exception support on.
add_compile_options(-fexceptions)
add_link_options(-fexceptions)

# stb (libstb-dev's headers): fonts.cpp reads font metrics, the S key writes PNGs.
file(CONFIGURE OUTPUT "${CMAKE_BINARY_DIR}/stb_impl.cpp" CONTENT  # written only when it changes
     "#define STB_TRUETYPE_IMPLEMENTATION\n#include <stb_truetype.h>\n#define STB_IMAGE_WRITE_IMPLEMENTATION\n#include <stb_image_write.h>\n")
# Dear ImGui with std::string input fields and its GLFW and OpenGL 3 backends, the
# latter on OpenGL ES 3 (WebGL 2).
add_library(kvscope_imgui STATIC
  "${CMAKE_BINARY_DIR}/stb_impl.cpp"
  "${KVSCOPE_IMGUI_DIR}/imgui.cpp" "${KVSCOPE_IMGUI_DIR}/imgui_draw.cpp"
  "${KVSCOPE_IMGUI_DIR}/imgui_tables.cpp" "${KVSCOPE_IMGUI_DIR}/imgui_widgets.cpp"
  "${KVSCOPE_IMGUI_DIR}/misc/cpp/imgui_stdlib.cpp"
  "${KVSCOPE_IMGUI_DIR}/backends/imgui_impl_glfw.cpp" "${KVSCOPE_IMGUI_DIR}/backends/imgui_impl_opengl3.cpp")
target_include_directories(kvscope_imgui SYSTEM PUBLIC "${KVSCOPE_IMGUI_DIR}" "${KVSCOPE_IMGUI_DIR}/misc/cpp"
                           "${_kv_host}/stb")
target_compile_definitions(kvscope_imgui PUBLIC IMGUI_IMPL_OPENGL_ES3 GLFW_INCLUDE_ES3)

# The page in build-web/site/, a folder for any static web server: index.html (from
# app/web/shell.html), index.js, index.wasm and its data (index.data): the bundled
# models where the installed app finds them, and DejaVu Sans.
function(kvscope_web_page target)
  set(_fonts /usr/share/fonts/truetype/dejavu)
  set_target_properties(${target} PROPERTIES OUTPUT_NAME index SUFFIX ".html"
                        RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/site")
  target_sources(${target} PRIVATE "${CMAKE_SOURCE_DIR}/app/browser.cpp")
  target_link_options(${target} PRIVATE
    -sUSE_GLFW=3 -sMIN_WEBGL_VERSION=2 -sMAX_WEBGL_VERSION=2 -sALLOW_MEMORY_GROWTH=1
    -sENVIRONMENT=web -sMINIFY_HTML=0
    "SHELL:--shell-file ${CMAKE_SOURCE_DIR}/app/web/shell.html"
    "SHELL:--preload-file ${CMAKE_SOURCE_DIR}/assets/models@${CMAKE_INSTALL_PREFIX}/share/kvscope/models"
    "SHELL:--preload-file ${_fonts}/DejaVuSans.ttf@${_fonts}/DejaVuSans.ttf"
    "SHELL:--preload-file ${_fonts}/DejaVuSans-Bold.ttf@${_fonts}/DejaVuSans-Bold.ttf")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${CMAKE_SOURCE_DIR}/app/web/shell.html")
endfunction()
