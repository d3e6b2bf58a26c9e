# Cross-compiles strata for aarch64 Linux (the Jetson's CPU) with Debian's cross toolchain and
# multiarch :arm64 libraries, and runs what it builds under qemu-user, so that ctest works here
# as it does natively (launch/cross-test-aarch64 uses it).
#
#   cmake -S . -B build/aarch64 -G Ninja --toolchain cmake/aarch64-linux-gnu.cmake
#
# Debian: g++-aarch64-linux-gnu qemu-user, and after `dpkg --add-architecture arm64` the :arm64
# development packages (launch/cross-test-aarch64 lists them).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Headers and libraries of the target come from the multiarch directories (/usr/include,
# /usr/lib/aarch64-linux-gnu) and the cross toolchain's own tree; programs run on the host.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# pkg-config must read the :arm64 .pc files, not the host's.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)

# ctest (and gtest_discover_tests) run every test binary through qemu-user. The binaries load the
# multiarch libc6:arm64 (/lib/ld-linux-aarch64.so.1, /usr/lib/aarch64-linux-gnu), where every
# :arm64 library is, so qemu needs no -L: with `-L /usr/aarch64-linux-gnu` (the cross toolchain's
# libc) qemu-user 7.2 hangs in the first pthread_create, before the clone.
find_program(STRATA_QEMU_AARCH64 qemu-aarch64 REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${STRATA_QEMU_AARCH64})

# -march=native would describe the build machine, not the target.
set(STRATA_NATIVE OFF CACHE BOOL "" FORCE)
