"""Connect to Ray: an embedded local instance by default, or an existing cluster.

- no address and no RAY_ADDRESS: start a local Ray (dashboard on 127.0.0.1);
- no address inside `ray job submit` (Ray sets RAY_ADDRESS there), `auto`, or HOST:PORT: join
  that cluster as a driver on one of its nodes;
- ray://HOST:10001: Ray Client, from a machine outside the cluster. Tune then runs the study's
  driver on the head node, so the study's storage must be one the head writes and this machine
  reads: a URI (s3://, gs://) or a shared filesystem.

Ray 2.60 turns token authentication on by default; this module never turns it off. To join a
cluster by address, Ray wants `RAY_AUTH_MODE=token` and the cluster's token (RAY_AUTH_TOKEN, or the
file at RAY_AUTH_TOKEN_PATH, default ~/.ray/auth_token) in the environment; an error says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

# Values passed to every trial process through Ray's runtime_env are shown on the dashboard and
# kept with the job: credentials must reach the nodes another way (the nodes' own environment).
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|CONNECTION_STRING|AUTH", re.IGNORECASE)
# ...and values that carry one whatever their name: URL user-info with a password
# (postgresql://u:pw@db/x), connection strings (AccountKey=..., Password=...), well-known key
# prefixes, and long random-looking tokens.
_SECRET_VALUES = (
    re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@"),
    re.compile(r"(^|;)\s*(AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd|sig)\s*=", re.IGNORECASE),
    re.compile(r"^(hf_|sk-|sk_live_|ghp_|gho_|github_pat_|xox[abp]-|AKIA|ASIA|AIza|glpat-)[A-Za-z0-9_-]{8,}"),
)
PORT_PROBE_TIMEOUT_S = 5.0  # a HOST:PORT that does not answer is reported after this long


class ClusterTooSmall(RuntimeError):
    """A trial asks for more CPUs or GPUs than any node of a cluster that does not grow has."""


def check_trial_resources(requests: Mapping[str, Mapping[str, float]]) -> None:
    """After connecting: every trial fits on one node, else Tune would leave it pending forever.

    `requests` maps a trial's name to its `cpus` and `gpus`. A trial's resources form one bundle, so
    they must fit on a single node. On an autoscaling cluster (Tune's test: the launcher's bootstrap
    config exists) new nodes may bring them, so there it only warns.
    """
    import ray
    from ray.tune.execution.cluster_info import _is_ray_cluster

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    largest = {kind: max((n.get(kind.upper()[:-1], 0.0) for n in nodes), default=0.0) for kind in ("cpus", "gpus")}
    too_big = [
        (name, kind, asked)
        for name, asked_for in requests.items()
        for kind, asked in asked_for.items()
        if asked > largest[kind]
    ]
    if not too_big:
        return
    name, kind, asked = too_big[0]
    have = f"its largest node has {largest['cpus']:g} CPUs and {largest['gpus']:g} GPUs"
    if _is_ray_cluster():
        print(f"note: trial {name} asks for {asked:g} {kind[:-1].upper()}s and {have}; waiting for the autoscaler")
        return
    raise ClusterTooSmall(
        f"{len({t for t, _, _ in too_big})} trials ask for more than a node of this Ray cluster has, so Tune "
        f"would leave them pending forever: trial {name} asks for {asked:g} {kind[:-1].upper()}s, but {have}. "
        f"Lower `resources.{kind}` in the study spec (--print-spec shows it), or run it on a cluster that has "
        "them (--address)"
    )


def connect(
    address: str | None = None, *, num_cpus: int | None = None, env_vars: Mapping[str, str] | None = None
) -> str:
    """Start or join Ray; return a short message with the dashboard URL and how to authenticate.

    `env_vars` (e.g. HF_HOME, IR_DATASETS_HOME) are set in every trial process on every node.
    """
    import ray

    if ray.is_initialized():
        if env_vars:
            raise RuntimeError(
                f"env_vars ({', '.join(env_vars)}) reach the trials only when this process connects "
                "to Ray, but it is connected already; pass them to the first connect()"
            )
        context = ray.get_runtime_context()
        return f"Ray already running in this process (node {context.get_node_id()[:8]})."
    check_env_vars(env_vars or {})
    joining = address is not None or bool(os.environ.get("RAY_ADDRESS"))
    kwargs: dict = {"address": address, "log_to_driver": True}
    if env_vars:
        kwargs["runtime_env"] = {"env_vars": dict(env_vars)}
    if not joining:
        kwargs |= {"dashboard_host": "127.0.0.1", "include_dashboard": True, "num_cpus": num_cpus}
    try:
        info = ray.init(**kwargs)
    except Exception as err:
        if _refused_for_authentication(err):
            raise RuntimeError(_auth_hint(address or os.environ.get("RAY_ADDRESS", ""))) from err
        raise
    url = info.dashboard_url
    where = address or os.environ.get("RAY_ADDRESS")
    lines = [f"Joined the Ray cluster at {where} ({_node_count()} nodes)."] if joining else []
    lines.append(f"Ray dashboard: http://{url}" if url else "Ray dashboard: not available on this cluster")
    if url and os.environ.get("RAY_AUTH_MODE", "token") != "disabled":
        token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
        lines.append(
            "  token auth is on: when the dashboard asks, paste the token printed by "
            f"`ray get-auth-token` (stored in {token_path}); API clients send it as "
            "`Authorization: Bearer <token>`."
        )
    return "\n".join(lines)


def check_env_vars(env_vars: Mapping[str, str]) -> None:
    """Refuse credentials, by name or by value: runtime_env values are visible on the dashboard and
    in Ray's logs. The message names the variables, never their values."""
    secret = sorted(name for name, value in env_vars.items() if _SECRET_NAME.search(name) or looks_secret(value))
    if secret:
        raise ValueError(
            f"{', '.join(secret)} look like credentials, but values passed to the trials are shown on "
            "the Ray dashboard; set them in each node's environment instead (e.g. a Modal Secret)"
        )


def looks_secret(value: str) -> bool:
    """Whether a value carries a credential: a URL password, a connection string's key, an API key."""
    if any(pattern.search(value) for pattern in _SECRET_VALUES):
        return True
    # A long random-looking token: no path or spaces, letters and digits mixed, many distinct characters.
    token = value.strip()
    return (
        len(token) >= 32
        and re.fullmatch(r"[A-Za-z0-9+/=_.-]+", token) is not None
        and not token.startswith(("/", ".", "~"))
        and "/" not in token.rstrip("=")[:8]
        and re.search(r"[0-9]", token) is not None
        and re.search(r"[A-Za-z]", token) is not None
        and len(set(token)) >= 16
    )


def check_address(address: str | None) -> None:
    """Before Ray starts: a HOST:PORT (or ray://HOST:PORT) answers within PORT_PROBE_TIMEOUT_S.

    Ray itself retries an unreachable address for minutes; `auto` and no address are left to Ray.
    """
    import socket
    from urllib.parse import urlsplit

    if not address or address == "auto":
        return
    split = urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = split.hostname, split.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ValueError(f"--address expects auto, HOST:PORT or ray://HOST:PORT, but got {address!r}")
    try:
        with socket.create_connection((host, port), timeout=PORT_PROBE_TIMEOUT_S):
            return
    except OSError as err:
        reason = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ValueError(
            f"no Ray cluster answers at {address} ({reason} within {PORT_PROBE_TIMEOUT_S:.0f} s); start one "
            "with `ray start --head` there, or check the address and port (GCS 6379, Ray Client 10001)"
        ) from None


def _node_count() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node["Alive"])


def _refused_for_authentication(err: BaseException | None) -> bool:
    """Whether Ray refused us for the token; ray.init wraps that error, sometimes only as text."""
    while err is not None:
        if type(err).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _auth_hint(address: str) -> str:
    return (
        f"could not authenticate to the Ray cluster at {address}: it refused the token. "
        "Ray's token authentication is on; set RAY_AUTH_MODE=token and give the cluster's token as "
        "RAY_AUTH_TOKEN (or a file named by RAY_AUTH_TOKEN_PATH; `ray get-auth-token` on the head "
        "prints it)."
    )
