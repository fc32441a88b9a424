"""A throw-away one-node SLURM cluster on loopback, for the tests that submit real jobs.

``start_cluster`` installs SLURM and munge from the Debian packages when they are missing (root
only), starts munged, slurmctld and slurmd in the foreground as child processes of the test run, and
waits until the node is idle; ``stop_cluster`` cancels what is left in the partition and stops the
three daemons by the ids of the processes it started. Anything that prevents a working cluster
raises ``ClusterUnavailable`` with what failed, which the tests turn into a skip.

The configuration is written to SLURM's compiled-in default path, ``/etc/slurm/slurm.conf``: the
plugin's job step runs ``srun`` with every ``SLURM_*`` variable (``SLURM_CONF`` included) removed
from its environment, so a configuration anywhere else would be invisible inside the jobs. A file
already there that this module did not write is never touched; the cluster is then unavailable.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
# Marks a slurm.conf as this module's, so one left by a killed test run may be replaced.
CONF_MARKER = "# written by tests/slurm_cluster.py"
CLUSTER_NAME = "smugtest"
# Two partitions on the one node, as a cluster separates CPU and GPU jobs; the node declares one
# GPU (a generic resource without a device file: enough for SLURM to schedule --gres/--gpus jobs).
PARTITION = "smugtest"
GPU_PARTITION = "smuggpu"
GRES_CONF = DEFAULT_CONF.parent / "gres.conf"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
PACKAGES = ("slurm-wlm", "munge")
# Memory kept back from the node for the operating system and the test run itself.
MEMORY_MARGIN_MB = 1024


class ClusterUnavailable(RuntimeError):
    """SLURM could not be installed or started here; the message says what failed."""


@dataclass
class SlurmCluster:
    """A running cluster: its files under ``root``, the daemons' processes by name."""

    root: Path
    conf: Path
    node: str
    partition: str
    gpu_partition: str
    cpus: int
    memory_mb: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.processes.items()}

    def log_tail(self, chars: int = 3000) -> str:
        """The end of every daemon log, for failure messages."""
        parts = []
        for log in sorted(self.root.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


def find_program(name: str) -> str | None:
    """A SLURM or munge program on PATH or in the sbin folders root's PATH usually has."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_programs() -> list[str]:
    return [name for name in (*DAEMONS, *CLIENTS) if find_program(name) is None]


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def ensure_installed(timeout: float = 900) -> None:
    """Install SLURM and munge from the Debian packages unless every program is already there."""
    if not missing_programs():
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable(
            f"SLURM programs {missing_programs()} are missing and installing them needs root"
        )
    if shutil.which("apt-get") is None:
        raise ClusterUnavailable(f"SLURM programs {missing_programs()} are missing and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
    )
    for cmd in steps:
        try:
            result = _run(cmd, timeout, env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterUnavailable(f"`{' '.join(cmd)}` failed: {exc}") from exc
        if result.returncode != 0:
            raise ClusterUnavailable(f"`{' '.join(cmd)}` failed: {(result.stdout + result.stderr)[-1500:]}")
    if missing_programs():
        raise ClusterUnavailable(f"after installing {PACKAGES}, still missing {missing_programs()}")


def cpu_count() -> int:
    """CPUs this process may use, as ``nproc`` counts them."""
    return len(os.sched_getaffinity(0))


def node_memory_mb(margin_mb: int = MEMORY_MARGIN_MB) -> int:
    """MemTotal of /proc/meminfo in MB, less a margin for everything that is not a job."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            total_mb = int(line.split()[1]) // 1024
            return max(total_mb - margin_mb, 256)
    raise ClusterUnavailable("/proc/meminfo has no MemTotal line")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_conf(root: Path, node: str, cpus: int, memory_mb: int, munge_socket: Path) -> str:
    """slurm.conf of a single node that is its own controller, every address on loopback."""
    ports = (free_port(), free_port())
    return f"""{CONF_MARKER} for a one-node test cluster; removed when the tests stop it.
ClusterName={CLUSTER_NAME}
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
# The plugin polls with squeue, which only sees a finished job while slurmctld still holds it.
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} CPUs={cpus} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName={GPU_PARTITION} Nodes={node} MaxTime=INFINITE State=UP
"""


def gres_conf(node: str) -> str:
    return f"{CONF_MARKER}\nAutoDetect=off\nNodeName={node} Name=gpu File=/dev/null Count=1\n"


def _claim_default_conf() -> None:
    """Refuse to overwrite a slurm.conf or gres.conf that belongs to someone else."""
    for conf in (DEFAULT_CONF, GRES_CONF):
        if conf.exists() and CONF_MARKER not in conf.read_text(errors="replace"):
            raise ClusterUnavailable(f"{conf} already exists and was not written by these tests")


def _start(cluster: SlurmCluster, name: str, cmd: list[str]) -> None:
    log = open(cluster.root / f"{name}.out", "w")
    try:
        # A session of its own: a Ctrl-C of the test run reaches the tests, whose teardown then
        # stops the daemons in order, not the daemons directly.
        cluster.processes[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()


def _wait_for(what: str, ready, cluster: SlurmCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in cluster.processes.items():
            if proc.poll() is not None:
                output = (cluster.root / f"{name}.out").read_text(errors="replace")[-2000:]
                raise ClusterUnavailable(f"{name} exited with {proc.returncode} waiting for {what}: {output}")
        if ready():
            return
        time.sleep(0.5)
    raise ClusterUnavailable(f"timed out after {timeout:.0f} s waiting for {what}")


def node_state(node: str) -> str:
    result = _run(["sinfo", "--noheader", "--Node", "--nodes", node, "--format", "%t"], timeout=20)
    # One line per partition the node is in, all with the node's one state.
    lines = result.stdout.split() if result.returncode == 0 else []
    return lines[0] if lines else ""


def start_cluster(root: Path, timeout: float = 90) -> SlurmCluster:
    """Start munged, slurmctld and slurmd with their files under ``root``; the node ends idle."""
    ensure_installed()
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting slurmd needs root")
    _claim_default_conf()
    node = socket.gethostname().split(".")[0]
    cluster = SlurmCluster(
        root=root,
        conf=DEFAULT_CONF,
        node=node,
        partition=PARTITION,
        gpu_partition=GPU_PARTITION,
        cpus=cpu_count(),
        memory_mb=node_memory_mb(),
    )
    for folder in ("munge", "state", "spool"):
        (root / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    root.chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = root / "munge" / "munge.socket"
    try:
        _start(
            cluster,
            "munged",
            [
                find_program("munged"),
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={munge_socket}",
                f"--pid-file={root / 'munge' / 'munged.pid'}",
                f"--log-file={root / 'munged.log'}",
                f"--seed-file={root / 'munge' / 'munged.seed'}",
            ],
        )
        _wait_for("the munge socket", munge_socket.exists, cluster, 30)
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.write_text(slurm_conf(root, node, cluster.cpus, cluster.memory_mb, munge_socket))
        GRES_CONF.write_text(gres_conf(node))
        _start(cluster, "slurmctld", [find_program("slurmctld"), "-D", "-f", str(DEFAULT_CONF)])
        _start(cluster, "slurmd", [find_program("slurmd"), "-D", "-f", str(DEFAULT_CONF), "-N", node])
        _wait_for("the node to register", lambda: node_state(node) != "", cluster, timeout)
        if node_state(node).rstrip("*~#") not in ("idle", "mix", "alloc"):
            _run(["scontrol", "update", f"NodeName={node}", "State=RESUME"], timeout=20)
        _wait_for("the node to become idle", lambda: node_state(node) == "idle", cluster, timeout)
    except ClusterUnavailable as exc:
        details = cluster.log_tail()
        stop_cluster(cluster)
        raise ClusterUnavailable(f"{exc}\n{details}") from exc
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _stop(proc: subprocess.Popen, grace: float = 15) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel the partition's jobs, stop slurmd, slurmctld and munged by their own process ids,
    and remove the slurm.conf this module wrote."""
    if "slurmctld" in cluster.processes and cluster.processes["slurmctld"].poll() is None:
        try:
            partitions = (cluster.partition, cluster.gpu_partition)
            for partition in partitions:
                _run(["scancel", "--partition", partition], timeout=20)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(jobs_in_partition(p) for p in partitions):
                time.sleep(0.5)
        except (OSError, subprocess.TimeoutExpired):
            pass
    for name in ("slurmd", "slurmctld", "munged"):
        if name in cluster.processes:
            _stop(cluster.processes[name])
    for conf in (DEFAULT_CONF, GRES_CONF):
        if conf.exists() and CONF_MARKER in conf.read_text(errors="replace"):
            conf.unlink()


def submitted_jobs() -> list[dict[str, str]]:
    """Every job the controller still holds (finished ones for MinJobAge): the plugin's comment
    (``rule_<rule>...``), the partition, the generic resources per node and the TRES asked for."""
    result = _run(["squeue", "--noheader", "--states", "all", "--format", "%k|%P|%b|%T"], timeout=20)
    jobs = []
    for line in result.stdout.splitlines():
        comment, partition, gres, state = line.split("|")
        jobs.append(
            {
                "comment": comment.strip(),
                "partition": partition.strip(),
                "gres": gres.strip(),
                "state": state.strip(),
            }
        )
    return jobs


def jobs_in_partition(partition: str) -> list[str]:
    """Ids of the partition's jobs that are not finished."""
    result = _run(
        [
            "squeue",
            "--noheader",
            "--partition",
            partition,
            "--states",
            "PENDING,RUNNING,COMPLETING,SUSPENDED",
            "--format",
            "%i",
        ],
        timeout=20,
    )
    return result.stdout.split() if result.returncode == 0 else []
