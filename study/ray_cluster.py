"""Connect to Ray: an embedded local instance by default, or an existing cluster by address.

Ray 2.60 turns token authentication on by default; this module never turns it off. The dashboard
and the head's ports bind to loopback unless the user starts the cluster otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path


def connect(address: str | None = None, *, num_cpus: int | None = None) -> str:
    """Start or join Ray; return a short message with the dashboard URL and how to authenticate."""
    import ray

    if ray.is_initialized():
        context = ray.get_runtime_context()
        return f"Ray already running in this process (node {context.get_node_id()[:8]})."
    kwargs: dict = {"address": address, "log_to_driver": True}
    if address is None:
        kwargs |= {"dashboard_host": "127.0.0.1", "include_dashboard": True, "num_cpus": num_cpus}
    info = ray.init(**kwargs)
    url = info.dashboard_url
    lines = [f"Ray dashboard: http://{url}" if url else "Ray dashboard: not available on this cluster"]
    if url and os.environ.get("RAY_AUTH_MODE", "token") != "disabled":
        token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
        lines.append(
            "  token auth is on: when the dashboard asks, paste the token printed by "
            f"`ray get-auth-token` (stored in {token_path}); API clients send it as "
            "`Authorization: Bearer <token>`."
        )
    return "\n".join(lines)
