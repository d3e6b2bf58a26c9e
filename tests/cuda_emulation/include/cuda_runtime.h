// The CUDA runtime and the kernel language on the CPU: the runtime API (cuda_runtime_api.h) and
// the device side of tests/cuda_emulation/device.h, which runs a launch's blocks one after the
// other and a block's threads as cooperative fibers.
#pragma once

#include "cuda_runtime_api.h"
#include "tests/cuda_emulation/device.h"
