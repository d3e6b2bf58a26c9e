# cmake -DINPUT=x_kernel.cu -DOUTPUT=gen/x_kernel.cc -P rewrite_launches.cmake
#
# Makes a CUDA source (.cu or .cuh) C++ for device.h: each launch
#   Kernel<T><<<grid, block, shared, stream>>>(args)
# becomes
#   Kernel<T> * ::cuda_emulation::LaunchConfig(grid, block, shared, stream)
#       ->* ::cuda_emulation::KernelArgs(args)
# which parses as Kernel<T> * (LaunchConfig(...) ->* KernelArgs(...)): ->* binds tighter than *,
# so the kernel's expression needs no rewriting. Nothing else changes; the lines stay where they
# were and a #line directive names the source, so that diagnostics and device.h's messages point at
# it. Every <<< must be a launch's: the script fails if the <<< and >>>( do not pair up.
file(READ "${INPUT}" text)
string(REGEX MATCHALL "<<<" opens "${text}")
string(REGEX MATCHALL ">>>[ \t\r\n]*\\(" closes "${text}")
list(LENGTH opens open_count)
list(LENGTH closes close_count)
if(NOT open_count EQUAL close_count)
  message(FATAL_ERROR "${INPUT}: ${open_count} '<<<' but ${close_count} '>>>(': not every launch "
                      "can be rewritten")
endif()
string(REPLACE "<<<" " * ::cuda_emulation::LaunchConfig(" text "${text}")
string(REGEX REPLACE ">>>([ \t\r\n]*)\\(" ")\\1->* ::cuda_emulation::KernelArgs(" text "${text}")
file(WRITE "${OUTPUT}.tmp" "#line 1 \"${INPUT}\"\n${text}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
