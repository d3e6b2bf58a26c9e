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
