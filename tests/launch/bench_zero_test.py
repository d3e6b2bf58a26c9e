"""launch/bench-zero without PyTorch and without running anything heavy: its usage errors, and the
commands --dry-run prints for a strata-gpt with and without --zero-stage (fake programs that
print such a --help), so that the stage reaches the 2-rank runs exactly when it should.

    python3 bench_zero_test.py --bench-zero launch/bench-zero
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile
import unittest

BENCH = None

OFFLOAD_HELP = """\
  --offload-params  where parameters live: none|host|nvme (default none)
  --offload-optimizer where optimizer state lives: none|host|nvme (default none)
  --nvme-dir        directory for the swap file of states placed on nvme
"""
STAGE_HELP = "  --zero-stage      ZeRO stage: 0|1|2|3 (default 0)\n"


def fake_build(directory, help_text):
    """A build directory whose bin/strata-gpt prints `help_text` for --help."""
    bin_dir = pathlib.Path(directory) / "bin"
    bin_dir.mkdir(parents=True)
    gpt = bin_dir / "strata-gpt"
    gpt.write_text("#!/bin/sh\ncat <<'EOF'\nusage: strata-gpt [flags]\nflags:\n" + help_text + "EOF\n")
    gpt.chmod(0o755)
    return str(directory)


class BenchZeroTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        root = pathlib.Path(self.tmp.name)
        self.with_stage = fake_build(root / "with", OFFLOAD_HELP + STAGE_HELP)
        self.without_stage = fake_build(root / "without", OFFLOAD_HELP)
        self.venv = str(root / "no-venv")  # never made: --dry-run installs nothing

    def bench(self, *flags):
        return subprocess.run([sys.executable, BENCH, "--venv", self.venv, *flags],
                              capture_output=True, text=True, timeout=60)

    def commands(self, build, *flags):
        """{side: command line} from --dry-run."""
        r = self.bench("--build-dir", build, "--dry-run", *flags)
        self.assertEqual(r.returncode, 0, r.stderr)
        return dict(line.split(": ", 1) for line in r.stdout.splitlines())

    def test_stage_3_goes_to_the_two_rank_runs_only(self):
        c = self.commands(self.with_stage)
        self.assertEqual(sorted(c), ["FSDP2 2 ranks", "strata 1 proc", "strata 2 ranks",
                                     "strata NVMe"])
        for side in ("strata 2 ranks", "strata NVMe"):
            self.assertIn("strata-run -n 2 --timeout 900 -- ", c[side])
            self.assertIn(" --threads 1 --zero-stage 3", c[side])
        self.assertNotIn("strata-run", c["strata 1 proc"])
        self.assertNotIn("--zero-stage", c["strata 1 proc"])
        self.assertIn("--threads 2", c["strata 1 proc"])
        self.assertIn("--offload-params nvme --offload-optimizer nvme --nvme-dir ", c["strata NVMe"])
        self.assertNotIn("--offload", c["strata 2 ranks"])
        self.assertIn("torch.distributed.run --standalone --nproc-per-node 2 ", c["FSDP2 2 ranks"])
        self.assertIn("fsdp2_gpt.py --data TOKENS --layers 6 --width 384 --heads 6 --seq 256 "
                      "--batch 8", c["FSDP2 2 ranks"])
        self.assertTrue(c["FSDP2 2 ranks"].startswith(self.venv + "/bin/python3 "))

    def test_stage_0_is_passed_when_the_help_lists_the_flag(self):
        c = self.commands(self.with_stage, "--zero-stage", "0", "--no-nvme")
        self.assertEqual(sorted(c), ["FSDP2 2 ranks", "strata 1 proc", "strata 2 ranks"])
        self.assertIn("--zero-stage 0", c["strata 2 ranks"])

    def test_stage_0_without_the_flag_runs_plain_data_parallel(self):
        c = self.commands(self.without_stage, "--zero-stage", "0")
        for cmd in c.values():
            self.assertNotIn("--zero-stage", cmd)

    def test_a_stage_the_program_lacks_is_refused_by_name(self):
        r = self.bench("--build-dir", self.without_stage, "--dry-run", "--zero-stage", "2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("has no --zero-stage, so it cannot run stage 2", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_usage_errors(self):
        for flags, message in [
                (["--steps", "2", "--skip", "2"], "--steps 2 must exceed --skip 2"),
                (["--batch", "7"], "--batch 7 does not split among 2 ranks"),
                (["--pairs", "0"], "--pairs must be at least 1"),
                (["--zero-stage", "4"], "argument --zero-stage: invalid choice: 4"),
                (["--threads", "0"], "--threads must be at least 1")]:
            r = self.bench("--build-dir", self.with_stage, "--dry-run", *flags)
            self.assertEqual(r.returncode, 2, flags)
            self.assertIn(message, r.stderr)

    def test_a_missing_build_says_how_to_build(self):
        r = self.bench("--build-dir", self.tmp.name + "/nowhere", "--dry-run")
        self.assertEqual(r.returncode, 1)
        self.assertIn("nowhere/bin/strata-gpt not found; build first", r.stderr)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--bench-zero", required=True)
    a, rest = p.parse_known_args()
    BENCH = a.bench_zero
    unittest.main(argv=[sys.argv[0], *rest])
