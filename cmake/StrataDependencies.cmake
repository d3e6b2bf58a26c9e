# Finds strata's dependencies and says what it found (as llm.c's Makefile does).
include(CheckCXXCompilerFlag)

find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(absl REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(ZLIB REQUIRED)
# io_uring for the NVMe engine (offload/); Debian: liburing-dev.
find_package(PkgConfig REQUIRED)
pkg_check_modules(liburing REQUIRED IMPORTED_TARGET liburing)
# Open MPI for the collectives' MPI backend and the bootstrap of NCCL; Debian: libopenmpi-dev.
# STRATA_WITH_MPI=OFF (the Jetson preset) leaves the MPI backend and the multi-rank tests out: the
# single-process backend remains.
if(STRATA_WITH_MPI)
  find_package(MPI REQUIRED COMPONENTS C)
  find_program(STRATA_MPIEXEC NAMES mpiexec mpirun HINTS ${MPI_C_COMPILER_DIR})
  set(STRATA_MPI_DETAIL "${MPI_C_VERSION} (mpiexec: ${STRATA_MPIEXEC})")
else()
  set(STRATA_MPI_DETAIL "(STRATA_WITH_MPI=OFF: single-process collectives only)")
endif()

# OpenBLAS built with OpenMP, so that GEMM and our own OpenMP kernels share one thread pool
# instead of two pools spinning against each other on the same cores.
find_library(STRATA_OPENBLAS_LIBRARY openblas
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
set(STRATA_OPENBLAS_VARIANT "openmp")
if(NOT STRATA_OPENBLAS_LIBRARY)
  find_library(STRATA_OPENBLAS_LIBRARY openblas REQUIRED)
  set(STRATA_OPENBLAS_VARIANT "default (not the OpenMP build: install libopenblas-openmp-dev)")
endif()
find_path(STRATA_CBLAS_INCLUDE_DIR cblas.h
  PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
        /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread /usr/include/openblas
  REQUIRED)

if(STRATA_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(STRATA_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()

# CUDA: the toolkit's libraries, and nvcc for the kernels (runtime/cuda/, optim/cuda/). No GPU is
# needed to build: the kernels compile for sm_80 (A100), sm_87 (Jetson Orin) and sm_90 (H100)
# unless CMAKE_CUDA_ARCHITECTURES says otherwise (the jetson preset: 87 alone).
set(STRATA_HAVE_CUDA OFF)
if(NOT STRATA_CUDA STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND)
    set(STRATA_HAVE_CUDA ON)
  elseif(STRATA_CUDA STREQUAL "ON")
    message(FATAL_ERROR "STRATA_CUDA=ON but the CUDA toolkit was not found (set CUDAToolkit_ROOT)")
  endif()
endif()
if(STRATA_HAVE_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 87 90)
  endif()
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND CUDAToolkit_NVCC_EXECUTABLE)
    set(CMAKE_CUDA_COMPILER ${CUDAToolkit_NVCC_EXECUTABLE})
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
endif()

# NCCL for the collectives' device backend: wherever the toolkit is, or /usr/local (the NVIDIA
# packages put nccl.h in /usr/local/include and libnccl.so beside the toolkit's libraries).
set(STRATA_HAVE_NCCL OFF)
set(STRATA_NCCL_DETAIL "(needs the CUDA toolkit)")
if(STRATA_HAVE_CUDA)
  find_path(STRATA_NCCL_INCLUDE_DIR nccl.h
    HINTS ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT}/include /usr/local/include)
  find_library(STRATA_NCCL_LIBRARY nccl
    HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib ${CUDAToolkit_LIBRARY_ROOT}/lib64
          /usr/local/lib)
  if(STRATA_NCCL_INCLUDE_DIR AND STRATA_NCCL_LIBRARY)
    set(STRATA_HAVE_NCCL ON)
    file(STRINGS ${STRATA_NCCL_INCLUDE_DIR}/nccl.h nccl_version_lines
         REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
    string(REGEX REPLACE "[^0-9;]" "" nccl_version "${nccl_version_lines}")
    string(REPLACE ";" "." nccl_version "${nccl_version}")
    set(STRATA_NCCL_DETAIL "${nccl_version}: ${STRATA_NCCL_LIBRARY}")
  else()
    set(STRATA_NCCL_DETAIL "(nccl.h or libnccl not found: set STRATA_NCCL_INCLUDE_DIR, STRATA_NCCL_LIBRARY)")
  endif()
endif()

# libFuzzer comes with clang's compiler-rt (Debian: clang, libclang-rt-14-dev). Only a build
# configured with STRATA_FUZZ=ON and clang uses it (launch/fuzz makes one); every build has the
# fuzz targets' replay drivers (tests/fuzz).
set(STRATA_HAVE_LIBFUZZER OFF)
set(STRATA_LIBFUZZER_DETAIL "(STRATA_FUZZ=OFF: fuzz targets build as replay drivers only)")
if(STRATA_FUZZ)
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    include(CheckCXXSourceCompiles)
    set(CMAKE_REQUIRED_FLAGS -fsanitize=fuzzer)
    check_cxx_source_compiles([[
      #include <cstddef>
      #include <cstdint>
      extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }]]
      STRATA_LIBFUZZER_LINKS)
    unset(CMAKE_REQUIRED_FLAGS)
    if(STRATA_LIBFUZZER_LINKS)
      set(STRATA_HAVE_LIBFUZZER ON)
      set(STRATA_LIBFUZZER_DETAIL "(clang ${CMAKE_CXX_COMPILER_VERSION})")
    else()
      set(STRATA_LIBFUZZER_DETAIL "(clang cannot link -fsanitize=fuzzer: install libclang-rt-14-dev; replay drivers only)")
    endif()
  else()
    set(STRATA_LIBFUZZER_DETAIL "(needs clang, not ${CMAKE_CXX_COMPILER_ID}; replay drivers only)")
  endif()
endif()

set(STRATA_ARCH_FLAGS "")
if(STRATA_NATIVE)
  check_cxx_compiler_flag(-march=native STRATA_HAS_MARCH_NATIVE)
  if(STRATA_HAS_MARCH_NATIVE)
    set(STRATA_ARCH_FLAGS -march=native)
  endif()
endif()

function(strata_report name found detail)
  if(found)
    message(STATUS "strata: [x] ${name} ${detail}")
  else()
    message(STATUS "strata: [ ] ${name} ${detail}")
  endif()
endfunction()
strata_report("OpenBLAS" TRUE "${STRATA_OPENBLAS_VARIANT}: ${STRATA_OPENBLAS_LIBRARY}")
strata_report("OpenMP" TRUE "${OpenMP_CXX_VERSION}")
strata_report("liburing" TRUE "${liburing_VERSION}")
strata_report("Abseil" TRUE "${absl_VERSION}")
strata_report("CUDA toolkit" ${STRATA_HAVE_CUDA} "(STRATA_CUDA=${STRATA_CUDA}) ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")
strata_report("MPI" ${STRATA_WITH_MPI} "${STRATA_MPI_DETAIL}")
strata_report("NCCL" ${STRATA_HAVE_NCCL} "${STRATA_NCCL_DETAIL}")
strata_report("-march=native" "${STRATA_ARCH_FLAGS}" "")
strata_report("sanitizers (ASan+UBSan)" ${STRATA_SANITIZE} "")
strata_report("libFuzzer" ${STRATA_HAVE_LIBFUZZER} "${STRATA_LIBFUZZER_DETAIL}")
