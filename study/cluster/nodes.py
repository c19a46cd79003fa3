"""Start Ray nodes as `ray start` processes: a head, workers that join it, and a wait until all are up.

The Modal app (deploy/modal_app.py) and the local multi-node tests run these same functions.

- Each node is one `ray start --block` process in its own process group: `stop()` ends it the way
  Ray drains a node, `kill()` takes the whole node down at once (a node failure), and neither ever
  touches another Ray on the machine (`ray stop` would stop all of them).
- Token authentication stays on: every node and helper process gets `RAY_AUTH_MODE=token` and the
  cluster's token (`RAY_AUTH_TOKEN`, or the file at `RAY_AUTH_TOKEN_PATH`, default
  ~/.ray/auth_token). The token travels in the environment, never on a command line or in a log.
- The dashboard binds to 127.0.0.1 unless the caller asks otherwise. Ray 2.60 has no flag that
  keeps its GCS and raylet ports on loopback: it replaces a loopback `--node-ip-address` with the
  machine's address and listens on every interface, so those ports rely on token auth (and the
  network around the machine).
- IPv6 (Modal's private network) works: Ray 2.60 writes and parses `[addr]:port`;
  `gcs_address()` builds that form.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STARTED_MARKER = "Ray runtime started."
DEFAULT_GCS_PORT = 6379
DEFAULT_DASHBOARD_PORT = 8265
DEFAULT_CLIENT_SERVER_PORT = 10001


@dataclass
class RayNode:
    """One running `ray start --block` process and what it reported."""

    role: str  # "head" | "worker"
    address: str  # the cluster's GCS address, host:port or [v6]:port
    process: subprocess.Popen
    log_path: Path
    dashboard_url: str | None = None  # head only

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Drain and stop this node (SIGTERM: `ray start` stops its own processes), then make sure."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group()

    def kill(self) -> None:
        """Take the whole node down at once, as a crashed machine would: SIGKILL to its process group."""
        self._kill_group()

    def _kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # start_new_session: the group id is the pid
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass


def gcs_address(host: str, port: int) -> str:
    """`host:port`, with IPv6 hosts in brackets as Ray expects (`[fd00::1]:6379`)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def node_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus `env`, with Ray's token auth switched on."""
    merged = {**os.environ, **(env or {})}
    mode = merged.get("RAY_AUTH_MODE", "token")
    if mode != "token":
        raise ValueError(
            f"cluster nodes run with Ray's token authentication, but RAY_AUTH_MODE is {mode!r}; "
            "unset it (or set it to 'token')"
        )
    merged["RAY_AUTH_MODE"] = "token"
    return merged


def ensure_auth_token(env: Mapping[str, str]) -> None:
    """Make sure the token that `env` points at exists: RAY_AUTH_TOKEN, or a token file (created 0600)."""
    if env.get("RAY_AUTH_TOKEN"):
        return
    path = Path(env.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    if path.exists() and path.read_text().strip():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes


def start_head(
    *,
    node_ip: str | None = None,
    port: int = DEFAULT_GCS_PORT,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int = DEFAULT_DASHBOARD_PORT,
    client_server_port: int = DEFAULT_CLIENT_SERVER_PORT,
    num_cpus: float | None = None,
    num_gpus: int | None = None,
    temp_dir: Path | None = None,
    log_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 180.0,
) -> RayNode:
    """Start the head node and return once it runs. `node_ip`: the address other nodes reach it at."""
    environment = node_environment(env)
    ensure_auth_token(environment)
    args = [
        "--head",
        f"--port={port}",
        f"--dashboard-host={dashboard_host}",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={client_server_port}",  # ray://HOST:PORT
    ]
    node = _start_node(
        "head",
        args + _common_args(node_ip, num_cpus, num_gpus, temp_dir) + list(extra_args),
        environment,
        log_dir or temp_dir,
        timeout,
    )
    node.address = _head_address(node)
    node.dashboard_url = _dashboard_url(node, dashboard_host, dashboard_port)
    return node


def start_worker(
    head_address: str,
    *,
    node_ip: str | None = None,
    num_cpus: float | None = None,
    num_gpus: int | None = None,
    temp_dir: Path | None = None,
    log_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 180.0,
) -> RayNode:
    """Start a worker node that joins the cluster at `head_address` (host:port or [v6]:port)."""
    environment = node_environment(env)
    args = [f"--address={head_address}"] + _common_args(node_ip, num_cpus, num_gpus, temp_dir) + list(extra_args)
    node = _start_node("worker", args, environment, log_dir or temp_dir, timeout)
    node.address = head_address
    return node


def wait_for_nodes(
    address: str, count: int, *, timeout: float = 300.0, env: Mapping[str, str] | None = None
) -> int:
    """Block until the cluster at `address` has `count` live nodes; return how many it has.

    Runs in a short-lived helper process, so the caller never becomes a Ray driver itself.
    """
    command = [sys.executable, "-m", "study.cluster.nodes", "wait", address, str(count), str(timeout)]
    done = subprocess.run(
        command, env=node_environment(env), capture_output=True, text=True, timeout=timeout + 60, check=False
    )
    if done.returncode != 0:
        last_line = ((done.stdout + done.stderr).strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"expected {count} live Ray nodes at {address} within {timeout:.0f} s, but: {last_line}")
    return int(done.stdout.strip().splitlines()[-1])


def wait_for_port(host: str, port: int, *, timeout: float = 300.0) -> None:
    """Block until something accepts TCP connections at host:port (e.g. the head's GCS, from a worker)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), port), timeout=5):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise RuntimeError(f"expected the Ray head at {gcs_address(host, port)} within {timeout:.0f} s: {err}")
            time.sleep(2.0)


def node_role(rank: int, ips: Sequence[str], port: int = DEFAULT_GCS_PORT) -> tuple[str, str]:
    """("head" | "worker", the cluster's GCS address) for the container of this rank: rank 0 is the head."""
    if not 0 <= rank < len(ips):
        raise ValueError(f"rank must be in [0, {len(ips)}) for {len(ips)} containers, but got {rank}")
    return ("head" if rank == 0 else "worker"), gcs_address(ips[0], port)


def start_node(
    rank: int,
    ips: Sequence[str],
    *,
    port: int = DEFAULT_GCS_PORT,
    head_options: Mapping | None = None,
    join_timeout: float = 600.0,
    **options,
) -> RayNode:
    """One node of a cluster whose members know their rank and everyone's IP (Modal's clusters).

    Rank 0 starts the head (with `head_options` such as the dashboard's host and port); every
    other rank waits for the head's port and joins. `options` go to start_head / start_worker.
    """
    role, head_address = node_role(rank, ips, port)
    node_ip = ips[rank] or None
    if role == "head":
        return start_head(node_ip=node_ip, port=port, **(head_options or {}), **options)
    wait_for_port(ips[0], port, timeout=join_timeout)
    return start_worker(head_address, node_ip=node_ip, **options)


def _common_args(node_ip: str | None, num_cpus: float | None, num_gpus: int | None, temp_dir: Path | None) -> list[str]:
    args = ["--block", "--disable-usage-stats"]
    if node_ip:
        args.append(f"--node-ip-address={node_ip}")
    if num_cpus is not None:
        args.append(f"--num-cpus={int(num_cpus)}")
    if num_gpus is not None:
        args.append(f"--num-gpus={num_gpus}")
    if temp_dir is not None:
        args.append(f"--temp-dir={Path(temp_dir).resolve()}")
    return args


def _start_node(role: str, args: list[str], env: dict[str, str], log_dir: Path | None, timeout: float) -> RayNode:
    log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir())
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"ray-start-{role}-{time.time_ns()}.log"
    # `python -m ray.scripts.scripts` rather than the `ray` script: the nodes then run this
    # interpreter (and so this environment's packages), whatever `ray` is first on PATH.
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", *args]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    node = RayNode(role=role, address="", process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if STARTED_MARKER in text:
            return node
        if process.poll() is not None:
            break
        time.sleep(0.5)
    node.kill()
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
    state = "exited" if process.returncode is not None else f"did not start within {timeout:.0f} s"
    raise RuntimeError(f"ray start ({role}) {state}; see {log_path}. Last lines:\n{tail}")


def _head_address(node: RayNode) -> str:
    """The address `ray start` printed for joining (it replaces a loopback node_ip with the machine's)."""
    shown = re.search(r"ray start --address='([^']+)'", _plain_log(node))
    if not shown:
        raise RuntimeError(f"the head started but printed no address to join; see {node.log_path}")
    return shown.group(1)


def _dashboard_url(node: RayNode, host: str, port: int) -> str:
    shown = re.search(r"view the dashboard at\s*\n[^\n]*?--\s+(\S+)", _plain_log(node))
    return "http://" + (shown.group(1) if shown else gcs_address(host, port))


def _plain_log(node: RayNode) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", node.log_path.read_text(errors="replace"))


def _wait_main(address: str, count: int, timeout: float) -> int:
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    deadline = time.monotonic() + timeout
    alive = 0
    while time.monotonic() < deadline:
        alive = sum(1 for n in ray.nodes() if n["Alive"])
        if alive >= count:
            print(alive)
            return 0
        time.sleep(1.0)
    print(f"only {alive} of {count} nodes came up", file=sys.stderr)
    return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m study.cluster.nodes")
    sub = parser.add_subparsers(dest="command", required=True)
    wait = sub.add_parser("wait", help="wait until a cluster has N live nodes")
    wait.add_argument("address")
    wait.add_argument("count", type=int)
    wait.add_argument("timeout", type=float)
    parsed = parser.parse_args()
    sys.exit(_wait_main(parsed.address, parsed.count, parsed.timeout))
