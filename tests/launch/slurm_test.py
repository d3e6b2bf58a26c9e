"""launch/strata-run inside Slurm for real: a one-node Slurm cluster started on this machine
(munged, slurmctld and slurmd with everything under a temporary directory: configuration, munge
key and socket, spool, state, PID files, logs, free ports), then 2 ranks through strata-run in an
`salloc -n 2` allocation, in an `sbatch --wait` job, and with --launcher srun; the daemons are
stopped and the directory removed at the end. Skipped (77) where the daemons cannot run (not
root, Slurm or munge not installed, a daemon that does not come up in time).

    python3 tests/launch/slurm_test.py --strata-run launch/strata-run \
        --probe build/release/tests/launch/rank_probe --gpt build/release/bin/strata-gpt
"""
import ctypes
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

import launch_common as lc

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("salloc", "sbatch", "srun", "sinfo", "scontrol")
START_SECONDS = 20  # for all daemons together, then the test is skipped


def die_with_parent():
    """In the daemon before exec: the kernel kills it when this test dies, even by SIGKILL (a
    ctest timeout), so that no daemon outlives its test."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_ports(count):
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Unavailable(Exception):
    """Slurm cannot run on this machine; the message says why."""


class SlurmCluster:
    """munged + slurmctld + slurmd for this node, in `directory`. Clients reach it through
    env() (SLURM_CONF names its slurm.conf). stop() ends the daemons this object started."""

    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.conf = self.dir / "slurm.conf"
        self.socket = self.dir / "munge" / "munge.socket"
        self.procs = []

    def env(self, base=None):
        env = dict(os.environ if base is None else base)
        for name in [n for n in env if n.startswith("SLURM_")]:
            del env[name]  # not a job of some outer Slurm
        env["SLURM_CONF"] = str(self.conf)
        return env

    def log(self, name):
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def start(self):
        (self.dir / "munge").mkdir(mode=0o700)
        key = self.dir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.spawn("munged", ["munged", "--foreground", "--force", f"--socket={self.socket}",
                              f"--key-file={key}", f"--pid-file={self.dir}/munged.pid",
                              f"--log-file={self.dir}/munged.log",
                              f"--seed-file={self.dir}/munge/munged.seed"])
        self.wait_for("munged", lambda: self.socket.exists())

        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=20)
        node_line = node.stdout.splitlines()[0] if node.returncode == 0 else ""
        if not node_line.startswith("NodeName="):
            raise Unavailable(f"slurmd -C did not describe this node: {node.stderr.strip()}")
        self.node = node_line.split()[0].split("=", 1)[1]
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir()
        ctld_port, slurmd_port = free_ports(2)
        user = "root"
        self.conf.write_text(f"""\
ClusterName=strata-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={self.dir}/state
SlurmdSpoolDir={self.dir}/spool
SlurmctldPidFile={self.dir}/slurmctld.pid
SlurmdPidFile={self.dir}/slurmd.pid
SlurmctldLogFile={self.dir}/slurmctld.log
SlurmdLogFile={self.dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
{node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=10 State=UP
""")
        self.spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self.spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
        self.wait_for("slurmd", self.node_idle)

    def spawn(self, name, cmd):
        with open(self.dir / f"{name}.out", "w") as out:
            self.procs.append((name, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                                      start_new_session=True,
                                                      preexec_fn=die_with_parent)))

    def node_idle(self):
        out = subprocess.run(["sinfo", "-h", "-n", self.node, "-o", "%T"], env=self.env(),
                             capture_output=True, text=True, timeout=10).stdout.strip()
        return out == "idle"

    def wait_for(self, name, ready):
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            for daemon, proc in self.procs:
                if proc.poll() is not None:
                    out = (self.dir / f"{daemon}.out").read_text(errors="replace")[-2000:]
                    raise Unavailable(f"{daemon} exited ({proc.returncode}): {out}\n"
                                      f"{self.log(daemon)}")
            if ready():
                return
            time.sleep(0.2)
        raise Unavailable(f"{name} not ready after {START_SECONDS} s:\n{self.log(name)}")

    def stop(self):
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class SlurmTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = lc.temp_dir()
        cls.slurm = SlurmCluster(cls.dir.name)
        try:
            cls.slurm.start()
        except Unavailable as e:
            cls.slurm.stop()
            cls.dir.cleanup()
            lc.skip(f"the Slurm daemons cannot run here: {e}")
        except Exception:
            cls.slurm.stop()
            cls.dir.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.slurm.stop()
        cls.dir.cleanup()

    def strata_run_in(self, allocation, flags, program, tag):
        """`ALLOCATION strata-run FLAGS -- PROGRAM`; the launched ranks are this test's tag."""
        return lc.strata_run(["--timeout", "25", *flags], program,
                             lc.tagged_env(tag, self.slurm.env()), timeout=60,
                             prefix=allocation)

    def test_salloc_runs_strata_run_with_the_allocation_s_ranks(self):
        tag = lc.new_tag()
        run = self.strata_run_in(["salloc", "-n", "2", "--time=1"], [], lc.DATA_PARALLEL.argv(),
                                 tag)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("mpirun -np 2 --bind-to none", run.stderr)  # SLURM_NTASKS, no hostfile
        lc.DATA_PARALLEL.check(self, run.stdout, ranks=2)
        self.assertEqual(lc.leftovers(tag), [])

    def test_sbatch_wait_runs_strata_run_as_a_batch_job(self):
        tag = lc.new_tag()
        out = pathlib.Path(self.dir.name) / f"sbatch-{tag}.out"
        script = pathlib.Path(self.dir.name) / f"sbatch-{tag}.sh"
        script.write_text("#!/bin/sh\nexec " + " ".join(
            [sys.executable, lc.paths.strata_run, "--timeout", "25", "--",
             *lc.DATA_PARALLEL.argv()]) + "\n")
        proc = subprocess.run(["sbatch", "--wait", "-n", "2", "--time=1", f"--output={out}",
                               str(script)], env=lc.tagged_env(tag, self.slurm.env()),
                              capture_output=True, text=True, timeout=60)
        output = out.read_text() if out.exists() else "(no output file)"
        self.assertEqual(proc.returncode, 0, proc.stderr + output)
        lc.DATA_PARALLEL.check(self, output, ranks=2)
        self.assertEqual(lc.leftovers(tag), [])

    def test_a_failing_rank_fails_the_salloc(self):
        run = self.strata_run_in(["salloc", "-n", "2", "--time=1"], [],
                                 lc.Probe().argv("--exit-rank", "1", "--exit-code", "3"),
                                 lc.new_tag())
        self.assertEqual(run.returncode, 3, run.stdout + run.stderr)

    def test_srun_launcher(self):
        tag = lc.new_tag()
        pmix = "pmix" in subprocess.run(["srun", "--mpi=list"], env=self.slurm.env(),
                                        capture_output=True, text=True, timeout=20).stdout
        run = self.strata_run_in(["salloc", "-n", "2", "--time=1"], ["--launcher", "srun"],
                                 lc.DATA_PARALLEL.argv(), tag)
        if not pmix:
            self.assertEqual(run.returncode, 2)
            self.assertIn("this Slurm has no PMIx plugin", run.stderr)
            return
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("srun --mpi=pmix -n 2", run.stderr)
        lc.DATA_PARALLEL.check(self, run.stdout, ranks=2)
        self.assertEqual(lc.leftovers(tag), [])

    def test_timeout_ends_srun_s_ranks(self):
        tag = lc.new_tag()
        run = lc.strata_run(["--launcher", "srun", "--timeout", "3", "--grace", "2"],
                            lc.Probe().argv("--sleep", "forever"),
                            lc.tagged_env(tag, self.slurm.env()), timeout=60,
                            prefix=["salloc", "-n", "2", "--time=1"])
        self.assertNotEqual(run.returncode, 0, run.stdout + run.stderr)  # salloc's: 124
        self.assertIn("--timeout 3 s expired", run.stderr)
        self.assertEqual(lc.leftovers(tag), [])

    def test_strata_gpt_runs_in_an_allocation(self):
        with lc.temp_dir() as d:
            gpt = lc.GptSmoke(d)
            run = self.strata_run_in(["salloc", "-n", "2", "--time=1"], [], gpt.argv(),
                                     lc.new_tag())
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            gpt.check(self, ranks=2)


def can_run_slurm():
    if os.geteuid() != 0:
        return "needs root to run slurmd and munged"
    missing = [t for t in DAEMONS + CLIENTS if not shutil.which(t)]
    if missing:
        return (f"{', '.join(missing)} not installed (Debian: slurmctld slurmd slurm-client munge; "
                "launch/setup installs them)")
    return None


if __name__ == "__main__":
    reason = can_run_slurm()
    if reason:
        lc.skip(reason)
    lc.main()
