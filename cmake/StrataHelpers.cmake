# One helper declares every library, test and benchmark target (as Abseil's absl_cc_library).

# -fno-math-errno lets sqrt and friends vectorize (no errno side effect), as PyTorch builds.
set(STRATA_COMMON_OPTIONS -Wall -Wextra -Wno-unused-parameter -fno-math-errno ${STRATA_ARCH_FLAGS})
if(STRATA_SANITIZE)
  list(APPEND STRATA_COMMON_OPTIONS -fsanitize=address,undefined -fno-omit-frame-pointer
       -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(STRATA_HAVE_LIBFUZZER)
  list(APPEND STRATA_COMMON_OPTIONS -fsanitize=fuzzer-no-link)  # coverage for the fuzzer
endif()

# strata_cc_library(NAME strata_runtime SRCS a.cc HDRS a.h DEPS ...)
function(strata_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;HDRS;DEPS" ${ARGN})
  add_library(${ARG_NAME} ${ARG_SRCS} ${ARG_HDRS})
  target_include_directories(${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${ARG_NAME} PRIVATE ${STRATA_COMMON_OPTIONS})
  target_link_libraries(${ARG_NAME} PUBLIC ${ARG_DEPS})
endfunction()

# strata_cc_test(NAME tensor_test SRCS tensor_test.cc DEPS strata_runtime [MPI_RANKS 2 3])
function(strata_cc_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE ${STRATA_COMMON_OPTIONS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
  if(ARG_LABELS)
    set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()

# strata_cc_benchmark(NAME runtime_benchmark SRCS ... DEPS ...)
function(strata_cc_benchmark)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  if(NOT STRATA_BUILD_BENCHMARKS)
    return()
  endif()
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE ${STRATA_COMMON_OPTIONS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} benchmark::benchmark)
endfunction()
