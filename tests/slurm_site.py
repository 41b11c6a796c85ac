"""A private single-node SLURM cluster for the tests: munged, slurmctld and slurmd started as root.

Everything lives in one folder: the munge key and socket, ``slurm.conf`` (cgroup-free:
proctrack/linuxproc, task/none, no accounting), the daemons' state, spool and logs. The
ports are free ones picked at start, so a SLURM or munge already running on the machine
is neither used nor disturbed. Commands (``sbatch``, ``squeue``...) reach this cluster
through the ``SLURM_CONF`` environment variable (:attr:`SlurmSite.env`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time

DAEMONS = ("munged", "slurmctld", "slurmd")
COMMANDS = ("sbatch", "squeue", "scancel", "sinfo")
PARTITION = "magtrack"


def unavailable() -> str | None:
    """Why a private SLURM cluster cannot run here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to start munged, slurmctld and slurmd"
    missing = [c for c in (*DAEMONS, *COMMANDS) if shutil.which(c, path=os.environ.get("PATH", "") + ":/usr/sbin")
               is None]
    if missing:
        return (f"needs Debian's slurm-wlm and munge (missing {', '.join(missing)}); "
                "`make test` installs them as root with apt-get")
    if importlib.util.find_spec("dask_jobqueue") is None:
        return "needs dask-jobqueue (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> tuple[str, str]:
    """(node name, NodeName line) of this machine as ``slurmd -C`` reports its CPUs and memory."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True, timeout=30).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    name, rest = line.split(None, 1)
    return name.split("=", 1)[1], f"{name} NodeAddr=127.0.0.1 {rest}"


def _which(cmd: str) -> str:
    return shutil.which(cmd, path=os.environ.get("PATH", "") + ":/usr/sbin")


class SlurmSite:
    """munged, slurmctld and slurmd of one test session, in ``root``; :meth:`stop` ends them all.

    Parameters
    ----------
    root : str or os.PathLike
        An empty folder owned by root.
    """

    def __init__(self, root):
        self.root = os.fspath(root)
        self.conf = os.path.join(self.root, "slurm.conf")
        self.env = {**os.environ, "SLURM_CONF": self.conf}
        self._procs: dict[str, subprocess.Popen] = {}

    # -- start ------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the three daemons and wait until the node takes jobs; RuntimeError with the logs if not."""
        os.chmod(self.root, 0o755)  # the munge socket must be reachable
        for sub in ("state", "spool", "log", "jobs"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        self._start_munged(timeout_s)
        node = self._write_conf()
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", node])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip()
            if state.startswith("idle"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"SLURM node not idle within {timeout_s} s (sinfo: {state!r})\n{self.logs()}")

    def _start_munged(self, timeout_s: float) -> None:
        key = os.path.join(self.root, "munge.key")
        fd = os.open(key, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
        self.munge_socket = os.path.join(self.root, "munge.socket")
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={self.root}/munged.pid",
                               f"--seed-file={self.root}/munged.seed", f"--log-file={self.root}/log/munged.log"])
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(self.munge_socket):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"munged made no socket within {timeout_s} s\n{self.logs()}")
            time.sleep(0.05)

    def _write_conf(self) -> str:
        name, node = _node_line()
        r = self.root
        conf = f"""\
ClusterName=magtrack-test
SlurmctldHost={name}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=1
MinJobAge=2
InactiveLimit=0
{node} State=UNKNOWN
PartitionName={PARTITION} Nodes={name} Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        return name

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(os.path.join(self.root, "log", f"{name}.out"), "wb")
        # own session: a Ctrl-C of the test run reaches the daemons only through stop()
        self._procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                             cwd=self.root, start_new_session=True)
        out.close()

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.logs()}")

    # -- use --------------------------------------------------------------------------

    def run(self, cmd: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM command against this cluster."""
        return subprocess.run([_which(cmd), *args], capture_output=True, text=True, env=self.env, check=check,
                              timeout=30)

    def job_ids(self) -> set[str]:
        """Jobs the controller still lists (pending, running or completing)."""
        return set(self.run("squeue", "-h", "-o", "%i").stdout.split())

    def wait_gone(self, jobs: set[str] | None = None, timeout_s: float = 15.0) -> set[str]:
        """Wait until none of ``jobs`` (default: none at all) is listed; return those still listed
        at ``timeout_s``. A job leaves the list once slurmd has ended all its processes."""
        deadline = time.monotonic() + timeout_s
        while (left := self.job_ids() if jobs is None else self.job_ids() & jobs) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def cancel_all(self, timeout_s: float = 15.0) -> set[str]:
        """Cancel every job of the partition; return the jobs still listed after ``timeout_s``."""
        if not self.job_ids():
            return set()
        self.run("scancel", f"--partition={PARTITION}", check=False)
        return self.wait_gone(timeout_s=timeout_s)

    def logs(self, tail: int = 20) -> str:
        """The last lines of each daemon's log."""
        parts = []
        for name in os.listdir(os.path.join(self.root, "log")):
            with open(os.path.join(self.root, "log", name), errors="replace") as f:
                lines = f.read().splitlines()[-tail:]
            parts.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- stop -------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel every job, end the daemons (SIGTERM, then SIGKILL), then any process of a job
        that outlived them; never raises."""
        try:
            if self._procs.get("slurmctld") and self._procs["slurmctld"].poll() is None:
                self.cancel_all()
        except Exception:  # the controller is gone: the sweep below still ends the jobs
            pass
        for name in reversed(DAEMONS):
            proc = self._procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in self._leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def _leftover_pids(self) -> list[int]:
        """Processes started for this cluster (their environment names its slurm.conf): slurmstepd and
        job processes that outlived slurmd. Not this process, which set the variable itself."""
        marker = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                continue
        return pids
