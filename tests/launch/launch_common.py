"""What the launcher tests share: the programs they launch, running launch/strata-run, and finding
the processes a job left behind.

    import launch_common as lc
    lc.main()                                     # parses --strata-run/--probe/--gpt, runs tests
    run = lc.strata_run(["-n", "2"], lc.DATA_PARALLEL.argv(), env=lc.tagged_env(tag))
    lc.DATA_PARALLEL.check(self, run.stdout, ranks=2)
    self.assertEqual(lc.leftovers(tag), [])

Every test gives its job a tag, STRATA_TEST_TAG=<unique>, which strata-run exports to every rank
(it exports STRATA_*), so that the processes of this test's job can be told from those of another
test running beside it: pgrep matches names and command lines, which two tests share.
"""
import argparse
import array
import gzip
import json
import math
import os
import pathlib
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

SKIP = 77  # ctest's SKIP_RETURN_CODE for these tests

paths = argparse.Namespace(strata_run=None, probe=None, gpt=None)


class Probe:
    """tests/launch/rank_probe: every rank prints 'rank R of N on HOST pid P netns NS addresses A'
    and checks an all-reduce of known data."""
    LINE = re.compile(r"^rank (\d+) of (\d+) on (\S+) pid (\d+) netns (\S+) addresses (\S+)$", re.M)

    def argv(self, *flags):
        return [paths.probe, *flags]

    def reports(self, stdout):
        """{rank: (host, netns, addresses)} from the report lines."""
        return {int(m[1]): (m[3], m[5], m[6]) for m in self.LINE.finditer(stdout)}

    def check(self, test, stdout, ranks):
        """Every rank reported once with the right size, and every rank's all-reduce was right."""
        sizes = {int(m[2]) for m in self.LINE.finditer(stdout)}
        test.assertEqual(sizes, {ranks}, stdout)
        test.assertEqual(sorted(self.reports(stdout)), list(range(ranks)), stdout)
        for r in range(ranks):
            test.assertIn(f"rank {r} allreduce ok", stdout)


# The program every launch path is tested with: the probe checks each rank's report and an
# all-reduce in a few hundred milliseconds; GptSmoke runs data-parallel strata-gpt through the same
# paths (one test each) against the one-process run.
DATA_PARALLEL = Probe()


class GptSmoke:
    """strata-gpt, a tiny model for 2 steps, ZeRO-3 over the job's ranks: rank 0 writes the
    metrics, whose losses must be those of the same command run as one process (the global batch
    is the same; the sums run in another order, so within 1e-5 relative)."""
    STEPS = 2

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.data = self.directory / "gpt-data.txt"
        self.data.write_text("the quick brown fox jumps over the lazy dog. " * 200)

    def command(self, metrics):
        return [paths.gpt, "--data", str(self.data), "--layers", "1", "--width", "32",
                "--heads", "2", "--seq", "16", "--batch", "6", "--steps", str(self.STEPS),
                "--threads", "1", "--metrics", str(metrics)]

    def argv(self):
        # ZeRO stage 3 with every tensor sharded: the gathers, reduce-scatters and the norm's
        # all-reduce all cross the job's transport.
        return self.command(self.directory / "metrics.jsonl") + [
            "--zero-stage", "3", "--zero-persistence-threshold", "0"]

    def records(self, path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    def check(self, test, ranks):
        path = self.directory / "metrics.jsonl"
        test.assertTrue(path.exists(), f"rank 0 wrote no {path}")
        records = self.records(path)
        test.assertEqual([rec["step"] for rec in records], list(range(1, self.STEPS + 1)))
        test.assertEqual({rec["world_size"] for rec in records}, {ranks})
        test.assertTrue(all(rec["comm_bytes"] > 0 for rec in records), records)
        alone_path = self.directory / "metrics-one-process.jsonl"
        subprocess.run(self.command(alone_path), check=True, capture_output=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_"))})
        alone = self.records(alone_path)
        for rec, one in zip(records, alone):
            test.assertTrue(math.isfinite(rec["loss"]), records)
            test.assertAlmostEqual(rec["loss"], one["loss"], delta=1e-5 * abs(one["loss"]))
        test.assertAlmostEqual(records[0]["loss"], math.log(256), delta=0.5)  # untrained: ~uniform


class FmnistSmoke:
    """strata-fmnist, 2 steps on a made-up Fashion-MNIST (random 28x28 images in the four gzip
    IDX files), data parallel over the job's ranks with its BatchNorms synchronized: rank 0's
    metrics must be those of the same command run as one process, within 1e-5 relative, the test
    scores included."""
    TRAIN, TEST, BATCH = 48, 20, 24

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        rng = random.Random(5)
        for name, n in (("train", self.TRAIN), ("t10k", self.TEST)):
            pixels = bytes(rng.randrange(256) for _ in range(n * 28 * 28))
            labels = bytes(rng.randrange(10) for _ in range(n))
            self._idx(f"{name}-images-idx3-ubyte.gz", 3, [n, 28, 28], pixels)
            self._idx(f"{name}-labels-idx1-ubyte.gz", 1, [n], labels)

    def _idx(self, name, dims, shape, data):
        header = struct.pack(">I", 0x800 + dims) + b"".join(struct.pack(">I", d) for d in shape)
        with gzip.open(self.directory / name, "wb") as f:
            f.write(header + data)

    def command(self, metrics, save, batch=BATCH):
        return [str(pathlib.Path(paths.gpt).with_name("strata-fmnist")), "--data",
                str(self.directory), "--epochs", "1", "--batch", str(batch), "--warmup", "0",
                "--threads", "1", "--log-every", "1", "--metrics", str(metrics),
                "--save", str(save)]

    def argv(self, batch=BATCH):
        return self.command(self.directory / "metrics.jsonl", self.directory / "checkpoint", batch)

    def records(self, path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    @staticmethod
    def weights(checkpoint):
        """The f32 tensors of a checkpoint's weights.safetensors, by name."""
        raw = (checkpoint / "weights.safetensors").read_bytes()
        size = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + size])
        out = {}
        for name, t in header.items():
            if name == "__metadata__":
                continue
            begin, end = t["data_offsets"]
            out[name] = array.array("f", raw[8 + size + begin:8 + size + end])
        return out

    def check(self, test, ranks):
        path = self.directory / "metrics.jsonl"
        test.assertTrue(path.exists(), f"rank 0 wrote no {path}")
        records = self.records(path)
        steps = [rec for rec in records if "loss" in rec]
        test.assertEqual([rec["step"] for rec in steps], [1, 2])
        test.assertEqual({rec["world_size"] for rec in steps}, {ranks})
        test.assertTrue(all(rec["comm_bytes"] > 0 for rec in steps), records)
        alone_path = self.directory / "metrics-one-process.jsonl"
        alone_save = self.directory / "checkpoint-one-process"
        subprocess.run(self.command(alone_path, alone_save), check=True, capture_output=True,
                       timeout=120,
                       env={k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_"))})
        alone = self.records(alone_path)
        # Rank 0's checkpoint: the weights and the running statistics of the one-process run.
        weights, alone_weights = self.weights(self.directory / "checkpoint"), self.weights(alone_save)
        test.assertEqual(sorted(weights), sorted(alone_weights))
        test.assertTrue(any(name.endswith(".running_var") for name in weights), sorted(weights))
        for name, values in alone_weights.items():
            scale = max([1.0] + [abs(v) for v in values])
            worst = max(abs(a - b) for a, b in zip(weights[name], values))
            test.assertLessEqual(worst, 1e-5 * scale, name)
        test.assertEqual(len(records), len(alone))
        for rec, one in zip(records, alone):
            for key in ("loss", "train_loss", "test_loss", "test_accuracy"):
                if key not in one:
                    continue
                test.assertTrue(math.isfinite(rec[key]), records)
                test.assertAlmostEqual(rec[key], one[key], delta=1e-5 * abs(one[key]),
                                       msg=f"{key} of record {rec}")
        test.assertAlmostEqual(steps[0]["loss"], math.log(10), delta=0.5)  # untrained: ~uniform


def new_tag():
    return uuid.uuid4().hex[:12]


def tagged_env(tag, base=None):
    env = dict(os.environ if base is None else base)
    env["STRATA_TEST_TAG"] = tag
    return env


def strata_run(flags, program, env, timeout=60, prefix=()):
    """Runs `prefix... strata-run FLAGS -- PROGRAM`; returns the CompletedProcess and its seconds."""
    start = time.monotonic()
    proc = subprocess.run([*prefix, sys.executable, paths.strata_run, *flags, "--", *program],
                          env=env, capture_output=True, text=True, timeout=timeout)
    proc.seconds = time.monotonic() - start
    return proc


def leftovers(tag, wait=5.0):
    """Live (not zombie) processes whose environment holds STRATA_TEST_TAG=tag, after giving them
    up to `wait` seconds to go: "pid command" strings."""
    needle = f"STRATA_TEST_TAG={tag}".encode()
    deadline = time.monotonic() + wait
    while True:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle not in f.read().split(b"\0"):
                        continue
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                found.append(f"{entry} {stat[stat.find('(') + 1:stat.rfind(')')]}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def skip(reason):
    """Ends the test as skipped: ctest sees SKIP_RETURN_CODE, and launch/test lists the reason
    (it reads the line after one ending in ': Skipped', as GoogleTest prints it)."""
    print(f"{sys.argv[0]}: Skipped\n{reason}", flush=True)
    sys.exit(SKIP)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--strata-run", required=True)
    p.add_argument("--probe", required=True)
    p.add_argument("--gpt", required=True)
    known, rest = p.parse_known_args()
    paths.strata_run, paths.probe, paths.gpt = known.strata_run, known.probe, known.gpt
    unittest.main(argv=[sys.argv[0], "-v", *rest])


def temp_dir():
    return tempfile.TemporaryDirectory(prefix="strata-launch-")
