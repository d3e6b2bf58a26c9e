"""launch/strata-run across two hosts for real: two network namespaces, each with its own host
name (a UTS namespace), joined only by a veth pair (10.77.0.1/24 and 10.77.0.2/24), and
mpirun --hostfile launching one rank on each through an rsh agent that enters the host's
namespace instead of ssh. Open MPI's TCP transport is limited to the veth's subnet, so the probe's
all-reduce crosses the veth; each rank reports its namespace and addresses to prove where it ran.
Skipped (77) where namespaces cannot be made (not root, no ip, no unshare).

    python3 tests/launch/multinode_test.py --strata-run launch/strata-run \
        --probe build/release/tests/launch/rank_probe --gpt build/release/bin/strata-gpt
"""
import os
import pathlib
import shutil
import subprocess
import sys
import unittest

import launch_common as lc

SUBNET = "10.77.0.0/24"
HOSTS = {"strata-a": "10.77.0.1", "strata-b": "10.77.0.2"}


def sh(*cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


class TwoHosts:
    """The two namespaces, their hosts files (`ip netns exec` bind-mounts /etc/netns/NS/hosts over
    /etc/hosts), the rsh agent and the hostfile; removed again by close(), also after a failure
    half-way through. Names carry this process's id, so that two runs of the test can coexist."""

    def __init__(self, directory):
        suffix = str(os.getpid())
        self.ns = {host: f"{host}-{suffix}" for host in HOSTS}
        self.veth = {host: f"sv{host[-1]}{suffix}"[:15] for host in HOSTS}
        self.directory = pathlib.Path(directory)
        self.agent = self.directory / "netns-agent"
        self.hostfile = self.directory / "hostfile"

    @staticmethod
    def remove_stale():
        """Removes the namespaces of earlier runs that were killed before their clean-up (a ctest
        timeout): those whose process id is gone."""
        for line in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                   text=True).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            host, _, pid = name.rpartition("-")
            if host in HOSTS and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
                shutil.rmtree(pathlib.Path("/etc/netns") / name, ignore_errors=True)

    def open(self):
        self.remove_stale()
        a, b = HOSTS
        for host in HOSTS:
            sh("ip", "netns", "add", self.ns[host])
        sh("ip", "link", "add", self.veth[a], "type", "veth", "peer", "name", self.veth[b])
        for host, address in HOSTS.items():
            ns, veth = self.ns[host], self.veth[host]
            sh("ip", "link", "set", veth, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", veth)
            sh("ip", "-n", ns, "link", "set", veth, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            etc = pathlib.Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
                f"{ip} {name}\n" for name, ip in HOSTS.items()))
        # Open MPI runs "AGENT HOST COMMAND..." as it would run ssh; the command is a shell line.
        cases = "".join(f"  {host}) ns={self.ns[host]} ;;\n" for host in HOSTS)
        self.agent.write_text(
            "#!/bin/sh\n"
            "# rsh agent for mpirun: runs the command line on HOST, i.e. in HOST's namespace.\n"
            'host=$1; shift\n'
            'case $host in\n' + cases +
            '  *) echo "netns-agent: unknown host $host" >&2; exit 255 ;;\n'
            'esac\n'
            'exec ip netns exec "$ns" unshare --uts /bin/sh -c \'hostname "$0" && eval "$*"\' '
            '"$host" "$@"\n')
        self.agent.chmod(0o755)
        self.hostfile.write_text("".join(f"{host} slots=1\n" for host in HOSTS))

    def close(self):
        for host in HOSTS:
            ns = self.ns[host]
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:  # nothing should be left; a failed run must not keep the namespace
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes the veth along
            shutil.rmtree(pathlib.Path("/etc/netns") / ns, ignore_errors=True)

    def inode(self, host):
        return f"net:[{os.stat(f'/run/netns/{self.ns[host]}').st_ino}]"

    def tx_bytes(self, host):
        return int(sh("ip", "netns", "exec", self.ns[host], "cat",
                      f"/sys/class/net/{self.veth[host]}/statistics/tx_bytes"))

    def run_on_first(self, flags, program, env, timeout=60):
        """strata-run started on strata-a (in its namespace, with its host name), as a user on
        the first node would."""
        first = next(iter(HOSTS))
        prefix = ["ip", "netns", "exec", self.ns[first], "unshare", "--uts", "/bin/sh", "-c",
                  'hostname "$0" && exec "$@"', first]
        mca = ["--mca", "plm_rsh_agent", str(self.agent), "--mca", "btl", "tcp,self",
               "--mca", "btl_tcp_if_include", SUBNET, "--mca", "oob_tcp_if_include", SUBNET]
        return lc.strata_run(["-n", "2", "--hostfile", str(self.hostfile), "--timeout", "25",
                              *mca, *flags], program, env, timeout=timeout, prefix=prefix)


class MultiNodeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = lc.temp_dir()
        cls.hosts = TwoHosts(cls.dir.name)
        try:
            cls.hosts.open()
        except Exception:
            cls.hosts.close()
            cls.dir.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.hosts.close()
        cls.dir.cleanup()

    def test_one_rank_on_each_host_all_reduces_over_the_veth(self):
        tag = lc.new_tag()
        before = self.hosts.tx_bytes("strata-b")
        run = self.hosts.run_on_first([], lc.DATA_PARALLEL.argv(), lc.tagged_env(tag))
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("--hostfile", run.stderr)
        lc.DATA_PARALLEL.check(self, run.stdout, ranks=2)
        reports = lc.Probe().reports(run.stdout)
        where = {host: (host, self.hosts.inode(host), ip) for host, ip in HOSTS.items()}
        self.assertEqual(sorted(reports.values()), sorted(where.values()), run.stdout)
        # The second host sent its half over the veth (and nothing else leads out of it).
        self.assertGreater(self.hosts.tx_bytes("strata-b") - before, 1024 * 8)
        self.assertEqual(lc.leftovers(tag), [])

    def test_a_rank_killed_on_the_second_host_ends_the_job(self):
        tag = lc.new_tag()
        run = self.hosts.run_on_first([], lc.Probe().argv("--kill-rank", "1", "--kill-after", "1"),
                                      lc.tagged_env(tag))
        self.assertIn("rank 1 killing itself", run.stdout)
        self.assertNotIn(run.returncode, (0, 124), run.stderr)
        self.assertLess(run.seconds, 30)
        self.assertEqual(lc.leftovers(tag), [])

    def test_a_host_that_cannot_be_reached_fails_the_launch(self):
        # A third host in the hostfile that the agent cannot reach, as ssh to a dead node.
        hostfile = pathlib.Path(self.dir.name) / "hostfile-unreachable"
        hostfile.write_text(self.hosts.hostfile.read_text() + "strata-c slots=1\n")
        tag = lc.new_tag()
        run = self.hosts.run_on_first(["--hostfile", str(hostfile), "-n", "3"],
                                      lc.DATA_PARALLEL.argv(), lc.tagged_env(tag))
        self.assertNotIn(run.returncode, (0, 124), run.stdout + run.stderr)
        self.assertIn("netns-agent: unknown host strata-c", run.stderr)
        self.assertLess(run.seconds, 30)
        self.assertEqual(lc.leftovers(tag), [])

    def test_strata_gpt_runs_on_both_hosts(self):
        with lc.temp_dir() as d:
            gpt = lc.GptSmoke(d)
            run = self.hosts.run_on_first([], gpt.argv(), lc.tagged_env(lc.new_tag()), timeout=120)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            gpt.check(self, ranks=2)


def can_make_namespaces():
    if os.geteuid() != 0:
        return "needs root to make network namespaces (ip netns add)"
    for tool in ("ip", "unshare"):
        if not shutil.which(tool):
            return f"needs {tool} (Debian: iproute2, util-linux)"
    probe = f"strata-probe-{os.getpid()}"
    proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"ip netns add is not permitted here: {proc.stderr.strip()}"
    try:
        checks = [("a veth pair", ["ip", "-n", probe, "link", "add", "sva", "type", "veth",
                                   "peer", "name", "svb"]),
                  ("a UTS namespace", ["ip", "netns", "exec", probe, "unshare", "--uts", "true"])]
        for what, cmd in checks:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            if proc.returncode != 0:
                return f"cannot make {what} here ({' '.join(cmd)}): {proc.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


if __name__ == "__main__":
    reason = can_make_namespaces()
    if reason:
        lc.skip(reason)
    lc.main()
