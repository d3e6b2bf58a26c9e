"""The virtual environment with PyTorch 2.x from PyPI that launch/bench-gpt --torch2 and
launch/bench-zero measure against: made on first use (several GB, never in tests or CI), reused
after while its torch passes the caller's check.

    import torchenv
    python = torchenv.python(venv, "bench-zero", version="", index_url=torchenv.CPU_INDEX,
                             needs="from torch.distributed.fsdp import fully_shard")
"""
import pathlib
import subprocess
import sys

CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # CPU-only wheels: a fraction of the size


def python(venv, script, version="", index_url="", needs=""):
    """The venv's python3, with torch 2.x (`version` pins it) installed from `index_url` (PyPI
    when empty) unless it is there already and `needs` (Python code) runs in it."""
    venv = pathlib.Path(venv)
    exe = venv / "bin" / "python3"
    check = ("import sys, torch\n"
             "if int(torch.__version__.split('.')[0]) < 2: sys.exit(1)\n" + needs)
    if exe.exists() and not version and subprocess.run(
            [str(exe), "-c", check], capture_output=True).returncode == 0:
        return str(exe)
    spec = f"torch=={version}" if version else "torch"
    print(f"{script}: installing {spec} from {index_url or 'PyPI'} into {venv} (once; several GB)",
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    index = ["--index-url", index_url] if index_url else []
    if subprocess.run([str(exe), "-m", "pip", "install", "-q", *index, spec]).returncode != 0:
        if not index_url:
            sys.exit(f"{script}: pip could not install {spec} into {venv}")
        # A machine that reaches PyPI alone: the full wheel, larger but the same torch.
        print(f"{script}: {index_url} failed; installing {spec} from PyPI instead", file=sys.stderr,
              flush=True)
        subprocess.run([str(exe), "-m", "pip", "install", "-q", spec], check=True)
    # numpy (torch warns without it) from PyPI, whatever index torch came from.
    subprocess.run([str(exe), "-m", "pip", "install", "-q", "numpy"], check=True)
    done = subprocess.run([str(exe), "-c", check], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{script}: {venv} has torch now but not what this script needs "
                 f"({needs or 'torch 2.x'}):\n{done.stderr}")
    return str(exe)
