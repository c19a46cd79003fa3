"""The Modal app (deploy/modal_app.py) builds offline: no Modal token, no network.

What it would run on Modal is checked here from the app's own objects: the image's pinned
requirements and project sources, the A100-80GB nodes and cluster sizes, the Volume and Secrets,
and the entry point's study arguments (parsed by the real CLI). Its node start-up is
study/cluster_nodes.start_node, which tests/test_cluster.py runs for real.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import socket
import tomllib
from pathlib import Path

import pytest

from study.cluster.nodes import node_role
from study.run import build_parser, resolve_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def modal_app(monkeypatch, tmp_path):
    """deploy/modal_app.py imported with no Modal credentials and no network, its image calls recorded."""
    import modal

    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_SERVER_URL", "STUDY_MODAL_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.modal.toml
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "absent.toml"))

    def no_network(*args, **kwargs):
        raise AssertionError(f"building the Modal app opened a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)

    calls: dict[str, list] = {}
    for method in ("debian_slim", "pip_install", "env", "add_local_python_source"):
        original = getattr(modal.Image, method)

        if method == "debian_slim":  # a static constructor

            def record(*args, _name=method, _original=original, **kwargs):
                calls.setdefault(_name, []).append((args, kwargs))
                return _original(*args, **kwargs)

            monkeypatch.setattr(modal.Image, method, staticmethod(record))
        else:

            def record(self, *args, _name=method, _original=original, **kwargs):
                calls.setdefault(_name, []).append((args, kwargs))
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(modal.Image, method, record)

    spec = importlib.util.spec_from_file_location("modal_app", ROOT / "deploy" / "modal_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.image_calls = calls
    return module


def test_the_image_pins_the_projects_dependencies_and_carries_its_code(modal_app):
    calls = modal_app.image_calls
    assert calls["debian_slim"] == [((), {"python_version": "3.11"})]
    ((installed, _),) = calls["pip_install"]
    assert installed == modal_app.IMAGE_REQUIREMENTS
    assert "torch==2.13.0" in installed
    pins = {re.split(r"[\[=]", r)[0].lower().replace("_", "-"): r for r in installed}
    assert all("==" in pin for pin in pins.values())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        name = re.split(r"[\[<>=~! ]", dependency)[0].lower().replace("_", "-")
        assert name in pins, f"{dependency} is not pinned in the Modal image"
    ((sources, _),) = calls["add_local_python_source"]
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert sorted(sources) == sorted(p.rstrip("*") for p in packages["include"])
    (((env,), _),) = calls["env"]
    assert env["RAY_AUTH_MODE"] == "token"  # token auth on every node
    assert env["HF_HOME"].startswith(modal_app.VOLUME_PATH)


def test_every_node_is_an_a100_80gb_container_in_a_cluster_of_the_asked_size(modal_app):
    assert modal_app.app.name == "reranker-optimizer-study"
    for nodes, function in modal_app.CLUSTERS.items():
        info = function.info()
        assert info.gpus == [("A100-80GB", 8)]
        assert (info.cluster_info.size if info.cluster_info else 1) == nodes
        assert {path: mount.name for path, mount in info.volumes.items()} == {"/vol": "reranker-study"}
        assert info.secrets == [f"modal.Secret.from_name('{name}')" for name in ("ray-auth-token", "wandb", "huggingface")]
        assert info.timeout == 24 * 3600
    assert sorted(modal_app.CLUSTERS) == [1, 2, 4]


def test_the_entry_point_runs_the_study_cli_with_a_bucket_for_several_nodes(modal_app):
    entry = inspect.signature(modal_app.main.info.raw_f).parameters
    assert {"grid", "config", "resume", "nodes", "storage", "models", "epochs", "max_failures"} <= set(entry)
    assert entry["nodes"].default == 2

    args = modal_app.study_arguments(grid="thesis", nodes=2, storage="s3://bucket/studies", name="thesis-a100")
    assert args == [
        "--grid", "thesis", "--scale", "full", "--storage", "s3://bucket/studies",
        "--name", "thesis-a100", "--max-failures", "3",
    ]  # fmt: skip
    spec = resolve_spec(build_parser().parse_args(args))  # the real CLI takes them
    assert (spec.storage, spec.name, spec.max_failures, len(spec.trials)) == ("s3://bucket/studies", "thesis-a100", 3, 6)
    assert {t.model.name: t.resources.gpus for t in spec.trials} == {"minilm": 0.25, "gte": 0.5, "modernbert": 0.5}

    one_node = modal_app.study_arguments(grid="thesis", nodes=1, models="minilm", epochs=1)
    assert one_node[:4] == ["--grid", "thesis", "--scale", "full"] and "--storage" not in one_node
    assert modal_app.study_arguments(resume="s3://bucket/studies/x", nodes=2) == ["--resume", "s3://bucket/studies/x"]
    with pytest.raises(ValueError, match="2 nodes need storage every node writes to, but got 'the Volume'"):
        modal_app.study_arguments(grid="thesis", nodes=2)
    with pytest.raises(ValueError, match="exactly one of --grid, --config or --resume"):
        modal_app.study_arguments(grid="thesis", resume="s3://b/x")


def test_modal_nodes_start_with_the_code_the_local_cluster_tests_run(modal_app):
    # run_node hands the container's rank and the cluster's IPs to cluster_nodes.start_node, the
    # function tests/test_cluster.py starts its two nodes with.
    assert "cluster_nodes.start_node(" in inspect.getsource(modal_app.run_node)
    ips = ["fd00:0:0:1::5", "fd00:0:0:1::6"]  # Modal's private network is IPv6
    assert node_role(0, ips, 6379) == ("head", "[fd00:0:0:1::5]:6379")
    assert node_role(1, ips, 6379) == ("worker", "[fd00:0:0:1::5]:6379")
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\) for 2 containers, but got 2"):
        node_role(2, ips)
