"""What launch/bench-offload and launch/demo-offload share: running strata-gpt with a metrics file,
the flags it must know, the fortunes corpus, the model's size and the disk space it needs.

    import gptrun
    gpt = gptrun.strata_gpt(build_dir, "bench-offload")
    gptrun.require_flags(gpt, ["--offload-params", "--recompute"], "bench-offload")
    run = gptrun.run(gpt, args, env, "bench-offload")   # run.records, run.rss_bytes, run.seconds
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORTUNES = pathlib.Path("/usr/share/games/fortunes")
STATE_BYTES_PER_PARAM = 16  # fp32 parameter, gradient, and AdamW's two moments


def size(text):
    """'512M', '1.5G', '4GiB', '123456' -> bytes: the programs' own size syntax (binary units),
    for argparse."""
    import argparse
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.upper().removesuffix("IB").removesuffix("B")
    unit = t[-1] if t and t[-1] in units else ""
    try:
        number = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size such as 123456, 64K, 512M, 1.5G")
    if number < 0:
        raise argparse.ArgumentTypeError(f"{text}: a size cannot be negative")
    return int(number * units[unit])


def strata_gpt(build_dir, script):
    gpt = pathlib.Path(build_dir) / "bin" / "strata-gpt"
    if not gpt.exists():
        sys.exit(f"{script}: {gpt} not found; build first: cmake --preset release && "
                 "cmake --build --preset release --target strata-gpt")
    return gpt


def require_flags(gpt, flags, script):
    """Stops with a clear message when this strata-gpt lacks a flag the script passes."""
    help_text = subprocess.run([str(gpt), "--help"], capture_output=True, text=True).stdout
    missing = [f for f in flags if f"  {f} " not in help_text]
    if missing:
        sys.exit(f"{script}: {gpt} has no {', '.join(missing)}; rebuild it from a tree that has")


def gpt_params(layers, width, vocab, positions):
    """Parameters of strata's GPT-2 (graph/models/gpt.h): tied token embedding, positions, per block
    two LayerNorms, QKV, projection and the 4x MLP with biases, then the final LayerNorm."""
    return vocab * width + positions * width + layers * (12 * width * width + 13 * width) + 2 * width


def gib(n):
    return n / (1 << 30)


def check_disk(directory, need_bytes, script):
    """Makes `directory` and stops, saying how much is needed and free, when its file system has
    less than `need_bytes` free."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    print(f"{script}: {directory} has {gib(free):.1f} GiB free; this run needs {gib(need_bytes):.1f} GiB",
          flush=True)
    if free < need_bytes:
        sys.exit(f"{script}: not enough space in {directory}: {gib(need_bytes):.1f} GiB needed, "
                 f"{gib(free):.1f} GiB free; pass --nvme-dir on a larger file system")


def fortunes_text(path, script):
    """Concatenates the text files of Debian's fortunes packages (fortunes, fortunes-min) into
    `path`, once, and returns it."""
    path = pathlib.Path(path)
    if path.exists():
        return path
    files = sorted(p for p in FORTUNES.glob("*")
                   if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8"))
    if not files:
        sys.exit(f"{script}: no fortune files in {FORTUNES}; install Debian's fortunes package "
                 "(launch/setup does)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for f in files:
            out.write(f.read_bytes())
    tmp.rename(path)
    print(f"{script}: wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(files)} files of "
          f"{FORTUNES})", flush=True)
    return path


class Run:
    def __init__(self, records, output, rss_bytes, seconds, disk_read=0, disk_written=0):
        self.records = records      # the metrics file's objects, one per step
        self.output = output        # what it printed, or "" when it went to the terminal
        self.rss_bytes = rss_bytes  # peak resident set of the process, from wait4
        self.seconds = seconds
        # Bytes the process made the storage layer read and write (/proc/PID/io read_bytes and
        # write_bytes, sampled until it ends): the kernel's count, independent of strata's.
        self.disk_read = disk_read
        self.disk_written = disk_written


def proc_io(pid):
    """(read_bytes, write_bytes) of a live process, or None once it is gone."""
    try:
        fields = dict(line.split(": ") for line in pathlib.Path(f"/proc/{pid}/io").read_text().splitlines())
        return int(fields["read_bytes"]), int(fields["write_bytes"])
    except (OSError, KeyError, ValueError):
        return None


def run(gpt, args, env, script, metrics, show_output=False, launcher=()):
    """Runs strata-gpt with `args` and `--metrics metrics`; stops the script with its output when
    it fails. With show_output the program writes to the terminal as it goes. `launcher` goes
    before the program (e.g. launch/strata-run -n 2 --); the RSS and disk bytes are then the
    launcher's, not the ranks'."""
    cmd = [*map(str, launcher), str(gpt), *map(str, args), "--metrics", str(metrics)]
    if show_output:
        print("+ " + " ".join(cmd), flush=True)
    log = pathlib.Path(metrics).with_suffix(".log")
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=None if show_output else out,
                                stderr=None if show_output else subprocess.STDOUT)
        io = (0, 0)
        try:
            while True:  # wait4 gives this child's own peak RSS; /proc/PID/io its disk bytes
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    break
                io = proc_io(proc.pid) or io
                time.sleep(0.2)
        except KeyboardInterrupt:  # the terminal's SIGINT reached the child too
            proc.wait()
            raise
    seconds = time.monotonic() - start
    output = log.read_text()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{script}: {' '.join(cmd)} failed with exit code {code}\n{output}")
    records = [json.loads(line) for line in pathlib.Path(metrics).read_text().splitlines()]
    return Run(records, "" if show_output else output, usage.ru_maxrss * 1024, seconds, *io)
