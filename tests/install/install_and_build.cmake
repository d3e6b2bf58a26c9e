# cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DGENERATOR=... -DBUILD_TYPE=...
#       -P install_and_build.cmake
# Installs BUILD_DIR into WORK_DIR/prefix and builds two projects against it that know strata only
# through find_package(strata CONFIG): one that includes every installed header, and
# examples/external/, which it then runs. Fails with the step that failed.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "${what} failed (${code}):\n${out}\n${err}")
  endif()
  message(STATUS "${what}: ok")
  set(output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# Every installed header, included on its own line of one translation unit.
file(GLOB_RECURSE headers RELATIVE ${prefix}/include/strata ${prefix}/include/strata/*.h)
list(LENGTH headers count)
if(count LESS 50)
  message(FATAL_ERROR "only ${count} headers were installed under ${prefix}/include/strata")
endif()
set(includes "")
foreach(h ${headers})
  string(APPEND includes "#include \"${h}\"\n")
endforeach()
file(WRITE ${WORK_DIR}/headers/all_headers.cc "${includes}int main() { return 0; }\n")
file(WRITE ${WORK_DIR}/headers/CMakeLists.txt [[
cmake_minimum_required(VERSION 3.25)
project(strata_headers LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(strata CONFIG REQUIRED)
add_executable(all_headers all_headers.cc)
target_link_libraries(all_headers PRIVATE strata::strata)
]])
foreach(project headers external)
  if(project STREQUAL "headers")
    set(source ${WORK_DIR}/headers)
  else()
    set(source ${SOURCE_DIR}/examples/external)
  endif()
  run("configure ${project} against the install" ${CMAKE_COMMAND} -S ${source}
      -B ${WORK_DIR}/${project}-build -G ${GENERATOR} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
      -DCMAKE_PREFIX_PATH=${prefix})
  run("build ${project}" ${CMAKE_COMMAND} --build ${WORK_DIR}/${project}-build)
endforeach()
run("run examples/external" ${WORK_DIR}/external-build/rings ${WORK_DIR}/rings-checkpoint)
message(STATUS "${output}")
if(NOT output MATCHES "reloaded from .* held-out loss")
  message(FATAL_ERROR "examples/external printed no reloaded held-out loss:\n${output}")
endif()
