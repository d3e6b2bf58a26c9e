// The bf16 conversions of the toolkit's cuda_bf16.h that the kernels use, on the CPU.
#pragma once

#include "tests/cuda_emulation/device.h"
