"""The Modal app (deploy/modal_app.py) builds offline: no Modal token, no network.

What it would run on Modal is checked here from the app's own objects: the image's pinned
requirements and project sources, what it rents for the thesis grid and a search (and the printed
estimate), the Volume, Secrets and restarts, the entry point's study arguments (parsed by the real
CLI), and the container's own body, run with Ray faked: a restart continues the study it finds.
Its node start-up is study/cluster/nodes.start_node, which tests/test_cluster.py runs for real.
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
    assert all(env[k].startswith(modal_app.VOLUME_PATH + "/cache") for k in ("HF_HOME", "IR_DATASETS_HOME", "STUDY_CACHE_DIR"))


def test_the_functions_rent_right_sized_containers_and_restart(modal_app):
    assert modal_app.app.name == "reranker-optimizer-study"
    secrets = [f"modal.Secret.from_name('{name}')" for name in ("ray-auth-token", "huggingface")]  # W&B optional
    one = modal_app.study_on_1_node.info()
    assert one.gpus == [] and one.cluster_info is None  # resized per study with with_options
    for nodes, function in modal_app.CLUSTERS.items():
        info = function.info()
        assert info.gpus == [("A100-80GB", 8)] and info.cluster_info.size == nodes
    for function in (modal_app.study_on_1_node, *modal_app.CLUSTERS.values(), modal_app.conduct_study):
        info = function.info()
        assert {path: mount.name for path, mount in info.volumes.items()} == {"/vol": "reranker-study"}
        assert info.secrets == secrets
        assert info.timeout == 24 * 3600
    assert one.max_retries == 3 and modal_app.conduct_study.info().gpus == []  # data is prepared on a CPU
    assert sorted(modal_app.CLUSTERS) == [2, 4]


def _variant_options(function):
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(function)._options


def test_the_thesis_grid_rents_three_gpus_on_one_container_and_says_what_it_costs(modal_app, capsys):
    args = modal_app.study_arguments(grid="thesis", name="thesis-a100")
    shape, demand = modal_app.plan(args)
    assert (demand.trials, demand.gpus, demand.cards, demand.cpus) == (6, 2.5, 3, 24.0)
    assert (shape.nodes, shape.gpu, shape.cpus_per_node, shape.memory_gib_per_node) == (1, "A100-80GB:3", 26.0, 112)
    resources = _variant_options(modal_app.study_function(shape)).resources
    assert (resources.gpu_config.gpu_type, resources.gpu_config.count) == ("A100-80GB", 3)
    assert (resources.milli_cpu, resources.memory_mb) == (26000, 112 * 1024)

    modal_app.main.info.raw_f(grid="thesis", name="thesis-a100", plan_only=True)  # prints; rents nothing
    shown = capsys.readouterr().out
    assert "Rents:  1 container, each A100-80GB:3 GPUs, 26 CPU cores, 112 GiB memory" in shown
    assert "Needs:  6 trials at once: 2.5 GPUs (3 cards once packed), 24 CPU cores" in shown
    assert "Cost:   about $9.62 per hour" in shown and "ESTIMATE" in shown

    # --nodes 2 still rents two whole hosts, and says how much of them stays idle
    shape, demand = modal_app.plan(modal_app.study_arguments(grid="thesis", storage="s3://b/s"), nodes=2)
    assert (shape.nodes, shape.gpus_per_node) == (2, 8) and modal_app.study_function(shape) is modal_app.study_on_2_nodes
    assert "13 of 16 rented GPUs have no trial to run" in modal_app.rental.describe_rental(shape, demand)


def test_a_search_rents_what_its_concurrent_trials_need_on_one_node(modal_app):
    shape, demand = modal_app.plan(modal_app.study_arguments(search="optuna", max_concurrent=4, name="s"))
    assert (demand.trials, demand.total_trials) == (4, 120)  # 20 samples x 6 pairs, 4 at once
    assert (shape.nodes, shape.gpu) == (1, "A100-80GB:2")  # the four largest: 4 x 0.5 GPU
    shape, demand = modal_app.plan(modal_app.study_arguments(search="optuna", name="s"))
    assert (shape.nodes, shape.gpu, demand.cards) == (1, "A100-80GB:8", 50)  # capped at one host; Tune queues
    with pytest.raises(ValueError, match="a search runs on one node"):
        modal_app.plan(modal_app.study_arguments(search="optuna", name="s"), nodes=2)


def test_a_study_larger_than_a_host_gets_a_cluster_with_bucket_storage(modal_app):
    from study.cluster import rental

    big = rental.concurrent_demand([(4.0, 0.5)] * 30)  # 15 cards
    assert rental.plan_rental(big).nodes == 2
    assert rental.plan_rental(rental.concurrent_demand([(4.0, 1.0)] * 20)).nodes == 4
    assert rental.pack_cards([0.5, 0.5, 0.5, 0.25, 0.25, 0.5]) == 3
    assert rental.pack_cards([0.75, 0.5, 0.5, 0.25]) == 2 and rental.pack_cards([2.0, 0.5]) == 3
    with pytest.raises(ValueError, match="2 nodes need storage every node writes to, but got 'the Volume'"):
        modal_app.plan(modal_app.study_arguments(grid="thesis", name="x"), nodes=2)


def test_the_entry_point_runs_the_study_cli_with_a_name_it_can_resume(modal_app):
    entry = inspect.signature(modal_app.main.info.raw_f).parameters
    assert {"grid", "config", "search", "nodes", "storage", "models", "epochs", "max_failures", "plan_only"} <= set(entry)
    assert entry["nodes"].default == 0  # sized from the spec

    args = modal_app.study_arguments(grid="thesis", storage="s3://bucket/studies", name="thesis-a100")
    assert args == [
        "--grid", "thesis", "--scale", "full", "--storage", "s3://bucket/studies",
        "--name", "thesis-a100", "--max-failures", "3",
    ]  # fmt: skip
    spec = resolve_spec(build_parser().parse_args(args))  # the real CLI takes them
    assert (spec.storage, spec.name, spec.max_failures, len(spec.trials)) == ("s3://bucket/studies", "thesis-a100", 3, 6)
    assert {t.model.name: t.resources.gpus for t in spec.trials} == {"minilm": 0.25, "gte": 0.5, "modernbert": 0.5}
    unnamed = modal_app.study_arguments(grid="thesis", models="minilm", epochs=1)
    assert unnamed[unnamed.index("--name") + 1].startswith("thesis-full-")  # named here, so a restart finds it
    with pytest.raises(ValueError, match="exactly one of --grid, --config or --search"):
        modal_app.study_arguments(grid="thesis", search="optuna")
    with pytest.raises(ValueError, match="add `wandb` to STUDY_MODAL_SECRETS"):
        modal_app.study_arguments(grid="thesis", wandb="online")


class _FakeHead:
    role, address = "head", "[fd00::1]:6379"

    def __init__(self):
        self.stopped = False

    def stop(self):
        self.stopped = True


def test_a_restarted_container_continues_the_study_it_finds(modal_app, monkeypatch, tmp_path):
    """The body the one-node container runs, with Ray, the tunnel and the Volume faked."""
    import contextlib
    import types

    from study.cluster import nodes as cluster_nodes

    heads, drivers, commits = [], [], []
    monkeypatch.setattr(modal_app, "VOLUME_PATH", str(tmp_path))
    monkeypatch.setattr(cluster_nodes, "start_node", lambda *a, **k: heads.append(_FakeHead()) or heads[-1])
    monkeypatch.setattr(cluster_nodes, "wait_for_nodes", lambda *a, **k: 1)
    monkeypatch.setattr(modal_app.modal, "forward", lambda port: contextlib.nullcontext(types.SimpleNamespace(url="https://t")))

    def commit():
        commits.append(1)
        if len(commits) == 2:
            raise RuntimeError("volume commit failed")  # the final commit: head.stop() must still run

    monkeypatch.setattr(modal_app, "volume", types.SimpleNamespace(commit=commit))

    def driver(command, **kwargs):
        drivers.append(command[command.index("study.run") + 1 : command.index("--address")])
        study = tmp_path / "studies" / "thesis-a100"
        study.mkdir(parents=True, exist_ok=True)
        (study / "study_spec.json").write_text("{}")  # what the driver writes first
        (study / "tuner.pkl").write_bytes(b"")  # then Tune, and its first state save
        (study / "experiment_state-2026-12-06_00-00-00.json").write_text("{}")
        return types.SimpleNamespace(returncode=0)

    monkeypatch.setattr(modal_app.subprocess, "run", driver)
    args = modal_app.study_arguments(grid="thesis", name="thesis-a100")
    modal_app.study_on_1_node.local(args, "", 3, 26.0)  # the first start
    modal_app.study_on_1_node.local(args, "", 3, 26.0)  # Modal's restart after the container died
    assert drivers[0] == args
    assert drivers[1] == ["--resume", str(tmp_path / "studies" / "thesis-a100")]
    assert all(head.stopped for head in heads) and len(commits) >= 3

    search = modal_app.study_arguments(search="optuna", name="s", max_concurrent=2)
    assert modal_app.driver_arguments(search, tmp_path) == search
    (tmp_path / "studies" / "s").mkdir(parents=True)
    (tmp_path / "studies" / "s" / "search_spec.json").write_text("{}")
    assert modal_app.driver_arguments(search, tmp_path) == [
        "--search", "optuna", "--resume", "--name", "s", "--storage", str(tmp_path / "studies"), "--max-concurrent", "2",
    ]  # fmt: skip


def test_a_restart_resumes_only_a_study_whose_tune_state_was_saved(modal_app, tmp_path):
    """A container that died before Tune's first state save left files that --resume refuses: start again."""
    args = modal_app.study_arguments(grid="thesis", name="thesis-a100")
    study = tmp_path / "studies" / "thesis-a100"
    study.mkdir(parents=True)
    (study / "study_spec.json").write_text("{}")
    (study / "manifest.json").write_text("{}")
    (study / "tuner.pkl").write_bytes(b"")
    assert modal_app.driver_arguments(args, tmp_path) == args  # not --resume, which would refuse it
    assert not study.exists()  # so the driver can start it under its name

    study.mkdir()
    (study / "study_spec.json").write_text("{}")
    (study / "minilm-adamw-00000").mkdir()  # anything written after Tune started: left alone
    assert modal_app.driver_arguments(args, tmp_path) == args
    assert (study / "minilm-adamw-00000").exists() and (study / "study_spec.json").exists()

    (study / "tuner.pkl").write_bytes(b"")
    (study / "experiment_state-2026-12-06_00-00-00.json").write_text("{}")
    assert modal_app.driver_arguments(args, tmp_path) == ["--resume", str(study)]


def test_modal_nodes_start_with_the_code_the_local_cluster_tests_run(modal_app):
    # run_node hands the container's rank and the cluster's IPs to cluster_nodes.start_node, the
    # function tests/test_cluster.py starts its two nodes with.
    assert "cluster_nodes.start_node(" in inspect.getsource(modal_app.run_node)
    ips = ["fd00:0:0:1::5", "fd00:0:0:1::6"]  # Modal's private network is IPv6
    assert node_role(0, ips, 6379) == ("head", "[fd00:0:0:1::5]:6379")
    assert node_role(1, ips, 6379) == ("worker", "[fd00:0:0:1::5]:6379")
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\) for 2 containers, but got 2"):
        node_role(2, ips)
