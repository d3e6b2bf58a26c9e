# One helper declares every library, test and benchmark target (as Abseil's absl_cc_library).
include(GoogleTest)

# -fno-math-errno lets sqrt and friends vectorize (no errno side effect), as PyTorch builds. C++
# only: nvcc takes its own flags for the .cu files.
set(STRATA_COMMON_OPTIONS -Wall -Wextra -Wno-unused-parameter -fno-math-errno ${STRATA_ARCH_FLAGS})
if(STRATA_SANITIZE)
  list(APPEND STRATA_COMMON_OPTIONS -fsanitize=address,undefined -fno-omit-frame-pointer
       -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(STRATA_HAVE_LIBFUZZER)
  list(APPEND STRATA_COMMON_OPTIONS -fsanitize=fuzzer-no-link)  # coverage for the fuzzer
endif()

# strata_cc_library(NAME strata_runtime SRCS a.cc HDRS a.h DEPS ... [INSTALL])
# INSTALL: part of the installed package (`cmake --install`, find_package(strata), Note [the
# installed package] in CMakeLists.txt): the library goes to lib/ in the export set strataTargets,
# and its HDRS to include/strata/<its directory>/, so that an installed program includes
# "graph/compile.h" as the tree does.
function(strata_cc_library)
  cmake_parse_arguments(ARG "INSTALL" "NAME" "SRCS;HDRS;DEPS" ${ARGN})
  add_library(${ARG_NAME} ${ARG_SRCS} ${ARG_HDRS})
  target_include_directories(${ARG_NAME} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
                             $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/strata>)
  target_compile_options(${ARG_NAME} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${STRATA_COMMON_OPTIONS}>")
  target_link_libraries(${ARG_NAME} PUBLIC ${ARG_DEPS})
  if(ARG_INSTALL)
    install(TARGETS ${ARG_NAME} EXPORT strataTargets
            ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
    file(RELATIVE_PATH dir ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
    foreach(header ${ARG_HDRS})
      get_filename_component(subdir ${header} DIRECTORY)
      install(FILES ${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/strata/${dir}/${subdir})
    endforeach()
  endif()
endfunction()

# strata_cc_test(NAME tensor_test SRCS tensor_test.cc DEPS strata_runtime [LABELS kernels]
#                [TIMEOUT seconds])
#
# Note [one ctest entry per test]
# Every GoogleTest test is its own ctest entry, named <NAME>.<Suite>.<Test> (`ctest -R NAME` still
# selects the whole binary), so that ctest says what each test did: a test that calls GTEST_SKIP()
# prints "[  SKIPPED ]", which gtest_discover_tests' SKIP_REGULAR_EXPRESSION reports as skipped,
# not passed, while the tests beside it in the same binary pass or fail on their own. One entry
# per binary cannot do that: ctest's skip expression wins over the exit code, so one skipping test
# would report the whole binary skipped and hide a failure next to it. The tests are listed when
# ctest runs (PRE_TEST), not at build time, so a build never runs a test binary.
function(strata_cc_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${STRATA_COMMON_OPTIONS}>")
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set(properties TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABELS)
    list(APPEND properties LABELS "${ARG_LABELS}")
  endif()
  gtest_discover_tests(${ARG_NAME} TEST_PREFIX "${ARG_NAME}." DISCOVERY_MODE PRE_TEST
                       DISCOVERY_TIMEOUT 120 PROPERTIES ${properties})
  # The environment is a list, which gtest_discover_tests' PROPERTIES would split apart: a script
  # that ctest includes after the one listing the tests (${ARG_NAME}_TESTS) sets it.
  set(environment "STRATA_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
  set(script "${CMAKE_CURRENT_BINARY_DIR}/${ARG_NAME}_environment.cmake")
  file(WRITE "${script}" "if(${ARG_NAME}_TESTS)\n  set_tests_properties(\${${ARG_NAME}_TESTS} PROPERTIES ENVIRONMENT\n    [==[${environment}]==])\nendif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${script}")
endfunction()

# strata_cc_benchmark(NAME runtime_benchmark SRCS ... DEPS ...)
function(strata_cc_benchmark)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  if(NOT STRATA_BUILD_BENCHMARKS)
    return()
  endif()
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${STRATA_COMMON_OPTIONS}>")
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} benchmark::benchmark)
endfunction()

# strata_add_mpi_test(NAME name NP ranks TARGET binary [ARGS ...] [LABELS ...] [TIMEOUT seconds])
# Runs `binary` under mpiexec with NP ranks as one ctest entry. Open MPI as root needs the two
# OMPI_ALLOW_* variables; --oversubscribe lets more ranks than cores run (this is a 2-core CI).
# Under the sanitizers, Open MPI's own allocations that it never frees at MPI_Finalize would fail
# every run, so leak detection is off for MPI tests alone (ASan's other checks stay on).
function(strata_add_mpi_test)
  cmake_parse_arguments(ARG "" "NAME;NP;TARGET;TIMEOUT" "ARGS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_test(NAME ${ARG_NAME}
           COMMAND ${STRATA_MPIEXEC} --oversubscribe -n ${ARG_NP} $<TARGET_FILE:${ARG_TARGET}>
                   ${ARG_ARGS})
  # One compute thread per rank: the ranks share the machine's cores.
  set(environment "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1")
  if(STRATA_SANITIZE)
    list(APPEND environment "ASAN_OPTIONS=detect_leaks=0")
  endif()
  set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT} ENVIRONMENT "${environment}"
                       PROCESSORS ${ARG_NP})
  if(ARG_LABELS)
    set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()
