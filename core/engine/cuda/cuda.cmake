# CUDA backend (issue 7): included from the end of core/CMakeLists.txt.
# KVSCOPE_CUDA: AUTO builds it wherever nvcc is found, ON requires it (configure
# fails with a clear message otherwise), OFF skips it. The sources live in
# core/engine/cuda/, outside kvcore's engine/*.cpp glob, and are compiled into an object library
# whose objects join kvcore; kvcore then links cudart and cuBLAS and carries
# KVSCOPE_HAVE_CUDA=1 to everything that uses it. Kernels are built for Ampere
# (sm_80 machine code, which also runs on sm_86/sm_89) and Hopper (sm_90 machine code
# plus compute_90 PTX that newer GPUs JIT-compile); pass -DCMAKE_CUDA_ARCHITECTURES
# to choose others.

set(KVSCOPE_CUDA_BUILT OFF)
string(TOUPPER "${KVSCOPE_CUDA}" _kv_cuda_mode)
set(_kv_cuda_try ON)
set(_kv_cuda_required OFF)
if(_kv_cuda_mode STREQUAL "AUTO")
elseif(_kv_cuda_mode MATCHES "^(ON|1|TRUE|YES)$")
  set(_kv_cuda_required ON)
elseif(_kv_cuda_mode MATCHES "^(OFF|0|FALSE|NO)$")
  set(_kv_cuda_try OFF)
else()
  message(FATAL_ERROR "KVSCOPE_CUDA='${KVSCOPE_CUDA}': use AUTO, ON or OFF")
endif()

if(_kv_cuda_try)
  # nvcc is often installed off PATH; look in the usual place too.
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(KVSCOPE_NVCC nvcc PATHS /usr/local/cuda/bin NO_CACHE)
    if(KVSCOPE_NVCC)
      set(ENV{CUDACXX} "${KVSCOPE_NVCC}")
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80-real;90")
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit)
  endif()
  if(CMAKE_CUDA_COMPILER AND TARGET CUDA::cudart AND TARGET CUDA::cublas)
    set(KVSCOPE_CUDA_BUILT ON)
  elseif(_kv_cuda_required)
    message(FATAL_ERROR
      "KVSCOPE_CUDA=ON but no usable CUDA toolkit was found (nvcc, cudart, cuBLAS): "
      "put nvcc on PATH or pass -DCMAKE_CUDA_COMPILER=/path/to/nvcc, or configure with "
      "-DKVSCOPE_CUDA=AUTO or OFF")
  else()
    message(STATUS "kvscope: CUDA backend not built (no nvcc with cudart and cuBLAS found)")
  endif()
endif()

if(KVSCOPE_CUDA_BUILT)
  message(STATUS "kvscope: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
                 "architectures ${CMAKE_CUDA_ARCHITECTURES})")
  add_library(kvcuda OBJECT
    ${CMAKE_CURRENT_SOURCE_DIR}/engine/cuda/cuda_engine.cpp
    ${CMAKE_CURRENT_SOURCE_DIR}/engine/cuda/cuda_forward.cpp
    ${CMAKE_CURRENT_SOURCE_DIR}/engine/cuda/cuda_graphs.cpp
    ${CMAKE_CURRENT_SOURCE_DIR}/engine/cuda/device_cache.cpp
    ${CMAKE_CURRENT_SOURCE_DIR}/engine/cuda/kernels.cu)
  target_include_directories(kvcuda PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(kvcuda PRIVATE Eigen3::Eigen CUDA::cudart CUDA::cublas)
  target_compile_definitions(kvcuda PRIVATE KVSCOPE_HAVE_CUDA=1)
  set_target_properties(kvcuda PROPERTIES
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON
    CUDA_RUNTIME_LIBRARY Shared
    POSITION_INDEPENDENT_CODE ON)
  target_compile_options(kvcuda PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-maybe-uninitialized>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall>)
  target_sources(kvcore PRIVATE $<TARGET_OBJECTS:kvcuda>)
  # kvcore now holds CUDA objects, so generators that compute CUDA settings for it
  # (Unix Makefiles does, Ninja does not) need its CUDA properties too. kvcore was
  # created before CMAKE_CUDA_ARCHITECTURES was set above, and its C++20 would
  # otherwise ask nvcc for a CUDA20 dialect: give it kvcuda's.
  set_target_properties(kvcore PROPERTIES
    CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON
    CUDA_RUNTIME_LIBRARY Shared)
  target_link_libraries(kvcore PUBLIC CUDA::cudart CUDA::cublas)
  target_compile_definitions(kvcore PUBLIC KVSCOPE_HAVE_CUDA=1)
endif()
