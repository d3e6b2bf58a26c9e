"""launch/strata-run on this host: ranks report, exit codes propagate, --timeout and a killed rank
end the whole job with nothing left behind, and bad invocations get clear errors.

    python3 tests/launch/strata_run_test.py --strata-run launch/strata-run \
        --probe build/release/tests/launch/rank_probe --gpt build/release/bin/strata-gpt
"""
import os
import pathlib
import signal
import subprocess
import sys
import time
import unittest

import launch_common as lc


def rank_pid(tag, rank):
    """The pid of strata-gpt's rank `rank` in the job tagged `tag`, or None."""
    want = {f"STRATA_TEST_TAG={tag}".encode(), f"OMPI_COMM_WORLD_RANK={rank}".encode()}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = set(pathlib.Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"))
            exe = os.readlink(f"/proc/{entry}/exe")
        except OSError:
            continue
        if want <= env and exe.endswith("strata-gpt"):
            return int(entry)
    return None


class StrataRunTest(unittest.TestCase):
    def run_job(self, flags, program, timeout=60, env=None):
        tag = lc.new_tag()
        run = lc.strata_run(flags, program, lc.tagged_env(tag, env), timeout=timeout)
        self.assertEqual(lc.leftovers(tag), [], f"processes left behind\n{run.stderr}")
        return run

    def test_every_rank_reports_on_two_and_three_ranks(self):
        for n in (2, 3):
            with self.subTest(ranks=n):
                run = self.run_job(["-n", str(n)], lc.DATA_PARALLEL.argv())
                self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
                lc.DATA_PARALLEL.check(self, run.stdout, ranks=n)
                self.assertIn("strata-run: ", run.stderr)  # it says what it runs
                self.assertIn(f"-np {n} ", run.stderr)

    def test_a_failing_rank_s_exit_code_is_the_job_s(self):
        run = self.run_job(["-n", "2"], lc.Probe().argv("--exit-rank", "1", "--exit-code", "3"))
        self.assertEqual(run.returncode, 3, run.stdout + run.stderr)

    def test_timeout_ends_the_job_and_leaves_no_process(self):
        # Ranks asleep, and ranks spinning in a barrier that rank 0 never enters.
        for flags in (["--sleep", "forever"], ["--block-rank", "0"]):
            with self.subTest(program=flags):
                run = self.run_job(["-n", "2", "--timeout", "3", "--grace", "2"],
                                   lc.Probe().argv(*flags))
                self.assertEqual(run.returncode, 124, run.stderr)
                self.assertIn("--timeout 3 s expired", run.stderr)
                self.assertGreaterEqual(run.seconds, 3)
                self.assertLess(run.seconds, 3 + 2 + 3)  # the timeout, the grace, slack

    def test_a_killed_rank_ends_the_job_while_the_others_wait_in_a_collective(self):
        start = time.monotonic()
        run = self.run_job(["-n", "3"], lc.Probe().argv("--kill-rank", "1", "--kill-after", "1"))
        self.assertLess(time.monotonic() - start, 30)
        self.assertIn("rank 1 killing itself", run.stdout)
        self.assertNotEqual(run.returncode, 0)
        self.assertNotEqual(run.returncode, 124)  # ended by the failure, not by a timeout
        self.assertIn("signal 9", run.stderr)     # mpirun names the killed rank's signal

    def test_a_killed_strata_gpt_rank_ends_the_job(self):
        """Data-parallel strata-gpt: SIGKILL rank 1 mid-run; rank 0, waiting for it in the
        next all-reduce, ends with the job well within 30 s, and no process is left."""
        with lc.temp_dir() as d:
            gpt = lc.GptSmoke(d)
            argv = gpt.argv()
            argv[argv.index("--steps") + 1] = "1000000"
            metrics = pathlib.Path(d) / "metrics.jsonl"
            tag = lc.new_tag()
            start = time.monotonic()
            proc = subprocess.Popen([sys.executable, lc.paths.strata_run, "-n", "2", "--", *argv],
                                    env=lc.tagged_env(tag), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
                self.assertIsNone(proc.poll(), "the job ended before it trained")
                self.assertLess(time.monotonic() - start, 60, "no step within 60 s")
                time.sleep(0.1)
            victim = rank_pid(tag, 1)
            self.assertIsNotNone(victim, "rank 1 of strata-gpt not found")
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
            self.assertLess(time.monotonic() - killed, 30)
            self.assertNotEqual(proc.returncode, 0)
            self.assertNotEqual(proc.returncode, 124, err)  # ended by the failure, not a timeout
            self.assertEqual(lc.leftovers(tag), [])

    def test_sigterm_to_strata_run_ends_every_rank(self):
        tag = lc.new_tag()
        proc = subprocess.Popen([sys.executable, lc.paths.strata_run, "-n", "2", "--",
                                 *lc.Probe().argv("--sleep", "forever")],
                                env=lc.tagged_env(tag), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        reported = 0
        while reported < 2:  # both ranks are up before the signal
            line = proc.stdout.readline()
            self.assertTrue(line, "the job ended before both ranks reported")
            reported += line.startswith("rank ") and " of 2 " in line
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        self.assertNotEqual(proc.returncode, 0)
        self.assertEqual(lc.leftovers(tag), [])

    def test_strata_gpt_runs_on_two_ranks(self):
        with lc.temp_dir() as d:
            gpt = lc.GptSmoke(d)
            run = self.run_job(["-n", "2"], gpt.argv(), timeout=120)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            gpt.check(self, ranks=2)

    def test_strata_gpt_refuses_a_batch_the_ranks_cannot_split(self):
        with lc.temp_dir() as d:
            gpt = lc.GptSmoke(d)  # --batch 6
            run = self.run_job(["-n", "4"], gpt.argv(), timeout=120)
            self.assertNotEqual(run.returncode, 0)
            self.assertIn("--batch 6 does not split among 4 ranks", run.stderr)

    def test_strata_fmnist_runs_on_two_ranks_as_one_process(self):
        with lc.temp_dir() as d:
            fmnist = lc.FmnistSmoke(d)
            run = self.run_job(["-n", "2"], fmnist.argv(), timeout=120)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            self.assertIn("data parallel over 2 ranks", run.stdout)
            fmnist.check(self, ranks=2)

    def test_strata_fmnist_refuses_a_batch_the_ranks_cannot_split(self):
        with lc.temp_dir() as d:
            fmnist = lc.FmnistSmoke(d)
            run = self.run_job(["-n", "2"], fmnist.argv(batch=15), timeout=120)
            self.assertNotEqual(run.returncode, 0)
            self.assertIn("--batch 15 does not split among 2 ranks", run.stderr)

    def test_dry_run_prints_the_mpirun_command(self):
        env = dict(os.environ, STRATA_THREADS="2", NCCL_DEBUG="INFO", OMPI_MCA_btl="tcp,self",
                   UNRELATED_VARIABLE="1")
        env.pop("SLURM_JOB_ID", None)
        run = lc.strata_run(["-n", "4", "--bind", "core", "--mca", "btl_tcp_if_include", "eth0",
                             "--dry-run"], ["prog", "--flag", "a b"], env)
        self.assertEqual(run.returncode, 0, run.stderr)
        cmd = run.stdout.strip()
        self.assertRegex(cmd, r"^\S*mpirun -np 4 --oversubscribe --bind-to core:overload-allowed ")
        for name in ("STRATA_THREADS", "NCCL_DEBUG", "OMPI_MCA_btl"):
            self.assertIn(f"-x {name} ", cmd)
        self.assertNotIn("UNRELATED_VARIABLE", cmd)
        self.assertEqual("--allow-run-as-root" in cmd, os.geteuid() == 0)
        self.assertTrue(cmd.endswith("--mca btl_tcp_if_include eth0 prog --flag 'a b'"), cmd)

    def test_dry_run_with_a_hostfile_does_not_oversubscribe(self):
        with lc.temp_dir() as d:
            hostfile = os.path.join(d, "hosts")
            with open(hostfile, "w") as f:
                f.write("node1 slots=2\nnode2 slots=2\n")
            env = dict(os.environ)
            env.pop("SLURM_JOB_ID", None)
            run = lc.strata_run(["-n", "4", "--hostfile", hostfile, "--dry-run"], ["prog"], env)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn(f"-np 4 --hostfile {hostfile} --bind-to none", run.stdout)
        self.assertNotIn("--oversubscribe", run.stdout)

    def test_inside_slurm_the_allocation_gives_hosts_and_rank_count(self):
        env = dict(os.environ, SLURM_JOB_ID="42", SLURM_NTASKS="5")
        run = lc.strata_run(["--dry-run"], ["prog"], env)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("-np 5 --bind-to none", run.stdout)
        self.assertNotIn("--oversubscribe", run.stdout)
        run = lc.strata_run(["--dry-run", "--launcher", "srun", "--bind", "socket"], ["prog"], env)
        self.assertRegex(run.stdout.strip(), r"^\S*srun --mpi=pmix -n 5 --cpu-bind=sockets prog$")
        run = lc.strata_run(["--hostfile", __file__], ["prog"], env)
        self.assertEqual(run.returncode, 2)
        self.assertIn("--hostfile inside a Slurm allocation", run.stderr)
        env.pop("SLURM_NTASKS")
        run = lc.strata_run([], ["prog"], env)
        self.assertEqual(run.returncode, 2)
        self.assertIn("SLURM_NTASKS not set", run.stderr)

    def test_srun_launcher_without_pmix_says_so(self):
        with lc.temp_dir() as d:
            srun = os.path.join(d, "srun")  # a Slurm whose MPI plugins lack PMIx
            with open(srun, "w") as f:
                f.write("#!/bin/sh\nprintf 'MPI plugin types are...\\n\\tnone\\n\\tpmi2\\n'\n")
            os.chmod(srun, 0o755)
            env = dict(os.environ, PATH=f"{d}:{os.environ['PATH']}", SLURM_JOB_ID="42",
                       SLURM_NTASKS="2")
            run = lc.strata_run(["--launcher", "srun"], [lc.paths.probe], env)
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertIn("this Slurm has no PMIx plugin (`srun --mpi=list` does not list pmix)",
                      run.stderr)

    def test_missing_mpirun_names_the_package(self):
        with lc.temp_dir() as empty:
            run = lc.strata_run(["-n", "2"], [lc.paths.probe], dict(os.environ, PATH=empty))
        self.assertEqual(run.returncode, 127)
        self.assertIn("mpirun not found on PATH", run.stderr)
        self.assertIn("openmpi-bin", run.stderr)

    def test_bad_invocations_are_usage_errors(self):
        cases = [
            (["-n", "2", "--bogus"], ["prog"], "unrecognized arguments: --bogus"),
            (["-n", "0"], ["prog"], "-n 0: the rank count must be at least 1"),
            (["-n", "2", "--timeout", "-1"], ["prog"], "--timeout -1"),
            (["-n", "2", "--bind", "hwthread"], ["prog"], "argument --bind: invalid choice"),
            (["-n", "2"], [], "no program after --"),
            (["-n", "2", "--hostfile", "/nonexistent/hosts"], ["prog"],
             "--hostfile /nonexistent/hosts: no such file"),
            (["-n", "2"], ["/nonexistent/prog"], "program /nonexistent/prog: not an executable"),
        ]
        env = dict(os.environ)
        env.pop("SLURM_JOB_ID", None)
        for flags, program, message in cases:
            with self.subTest(flags=flags, program=program):
                run = lc.strata_run(flags, program, env)
                self.assertEqual(run.returncode, 2, run.stderr)
                self.assertIn(message, run.stderr)
        run = subprocess.run([sys.executable, lc.paths.strata_run, "-n", "2", "prog"], env=env,
                             capture_output=True, text=True)
        self.assertEqual(run.returncode, 2)
        self.assertIn("give the program after --", run.stderr)

    def test_help_explains_the_paths(self):
        run = subprocess.run([sys.executable, lc.paths.strata_run, "--help"], capture_output=True,
                             text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        for text in ("--hostfile", "--timeout", "--bind", "salloc", "sbatch", "srun --mpi=pmix",
                     "--oversubscribe", "--allow-run-as-root", "STRATA_*"):
            self.assertIn(text, run.stdout)


if __name__ == "__main__":
    lc.main()
