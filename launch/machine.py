"""What the benchmark scripts print about the machine they ran on, so a table can be compared with
another machine's."""
import os


def cpu_summary():
    """E.g. 'Intel(R) Xeon(R) Processor (family 6 model 207), 2 cores, AVX-512'. Virtual machines
    often hide the marketing name; the family and model numbers still tell the generation."""
    fields, flags = {}, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags:
                    flags = set(value.split())
                elif key in ("model name", "cpu family", "model") and key not in fields:
                    fields[key] = value.strip()
    except OSError:
        pass
    name = fields.get("model name", "unknown CPU")
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name}, {os.cpu_count()} cores, {isa}"


OLD_OPENBLAS_CORES = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Barcelona"}


def openblas_core():
    """The kernels OpenBLAS picks on this machine ('SkylakeX', 'Prescott', ...), or ''."""
    import ctypes
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
    except OSError:
        return ""
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def suitable_openblas_coretype():
    """OPENBLAS_CORETYPE to set when this OpenBLAS does not know the CPU and would run its SSE3
    kernels (Note [OpenBLAS on CPUs it does not know] in runtime/blas_check.h), else ''."""
    if os.environ.get("OPENBLAS_CORETYPE") or openblas_core() not in OLD_OPENBLAS_CORES:
        return ""
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "SkylakeX"
    return "Haswell" if {"avx2", "fma"} <= flags else ""


def blas_env(env):
    """`env` with OPENBLAS_CORETYPE set where the library would pick kernels older than the CPU,
    announced once on stderr; benchmarks then measure every side with the CPU's own vectors."""
    core = suitable_openblas_coretype()
    if core:
        import sys
        print(f"note: OpenBLAS does not know this CPU and would run its {openblas_core()} kernels; "
              f"running with OPENBLAS_CORETYPE={core}", file=sys.stderr)
        env = dict(env, OPENBLAS_CORETYPE=core)
    return env


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--openblas-coretype"]:
        print(suitable_openblas_coretype())
    else:
        print(cpu_summary())
