"""A real two-node Ray cluster on this machine: a job-submitted study, and a node killed mid-trial.

The nodes are `ray start` processes started by study/cluster/nodes.py, the same code the Modal
app runs. Each node has its own temp dir (so its own session and artifact directories, as on a
separate machine), the cluster has its own token and ports, and the fixture stops exactly the
processes it started, so other Ray instances on the machine are never touched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ray import cloudpickle

from study.cluster.nodes import RayNode, node_environment, start_node, wait_for_nodes
from study.cluster.whole_files import WholeFileHandler
from study.grids import build_study, restrict
from study.spec import StudySpec
from trainables.trial import STEP_LOG, is_measurement, run_trial

pytestmark = pytest.mark.cluster

# A credential in the nodes' environment: it must never reach a log, a spec or a result file.
FAKE_API_KEY = "sk-test-" + secrets.token_hex(8)


@dataclass
class TwoNodes:
    head: RayNode
    worker: RayNode
    env: dict[str, str]
    root: Path
    client_port: int  # the head's Ray Client server: ray://HOST:client_port

    @property
    def client_env(self) -> dict[str, str]:
        """An environment for Ray clients of this cluster (the CLI, a driver): token auth on."""
        return node_environment(self.env)

    @property
    def token(self) -> str:
        return Path(self.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes():
    # A short root: Ray's socket paths live under the temp dir and must stay under 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    env = {
        "RAY_AUTH_TOKEN_PATH": str(root / "auth_token"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "STUDY_TEST_API_KEY": FAKE_API_KEY,
        "RAY_AIR_NEW_OUTPUT": "0",
    }
    # Both "containers" are on this machine. STUDY_TEST_NODE_IP picks their address, e.g. an IPv6
    # one as on Modal's network; Ray replaces a loopback address with the machine's own.
    ips = [os.environ.get("STUDY_TEST_NODE_IP", "127.0.0.1")] * 2
    port, client_port = _free_port(), _free_port()
    nodes: list[RayNode] = []
    try:
        for rank, name in enumerate(("h", "w")):  # the rank logic the Modal app runs (deploy/modal_app.py)
            node = start_node(
                rank,
                ips,
                port=port,
                head_options={"dashboard_port": _free_port(), "client_server_port": client_port},
                num_cpus=1,
                temp_dir=root / name,
                env=env,
                extra_args=[f"--dashboard-agent-listen-port={_free_port()}"],
            )
            nodes.append(node)
        head, worker = nodes
        assert wait_for_nodes(head.address, 2, timeout=120, env=env) == 2
        yield TwoNodes(head, worker, env, root, client_port)
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def _smoke_config(
    path: Path, storage: Path, name: str, epochs: tuple[int, int], max_pairs: int | None = 160, **study
) -> Path:
    """A YAML study (as --print-spec writes it): minilm with adamw and lion for the given epochs each."""
    spec = restrict(build_study("thesis", scale="smoke"), models=["minilm"], storage=str(storage), name=name)
    data = spec.model_dump(mode="json") | study
    for trial, trial_epochs in zip(data["trials"], epochs):
        trial["training"]["epochs"] = trial_epochs
        trial["training"]["data"]["max_pairs"] = max_pairs  # 160: 10 steps, about a second an epoch
    path.write_text(yaml.safe_dump(data))
    return path


def _study_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "study.run", "--grid", "thesis", "--scale", "smoke", "--models", "minilm", *args]


def _working_dirs(node_temp_dir: Path, study: str) -> set[str]:
    """Names of the trials whose processes ran on the node with this temp dir."""
    return {p.name for p in node_temp_dir.glob(f"session_*/artifacts/*/{study}/working_dirs/*")}


def _start_driver(cluster: TwoNodes, log_path: Path, *args: str) -> subprocess.Popen:
    """`python -m study.run ... --address HOST:PORT`: a driver on a node of the cluster."""
    # Tune saves its experiment state every second instead of every ~10 s, so a killed driver
    # leaves a current one (the tests wait for it).
    env = {**cluster.client_env, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "study.run", *args, "--address", cluster.head.address],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_for(condition, driver: subprocess.Popen, log_path: Path, timeout: float = 240, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the driver ended early:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{log_path.read_text()[-3000:]}"
        time.sleep(poll)


def _last_checkpoint(study_dir: Path) -> dict[str, int]:
    """Trial directory -> index of its newest stored checkpoint (Tune stores one per epoch)."""
    newest: dict[str, int] = {}
    for checkpoint in study_dir.glob("*/checkpoint_*"):
        index = int(checkpoint.name.rpartition("_")[2])
        newest[checkpoint.parent.name] = max(index, newest.get(checkpoint.parent.name, -1))
    return newest


def _tune_state(study_dir: Path) -> dict[str, dict]:
    """Trial directory -> Tune's saved status and failure count (its experiment state file)."""
    files = sorted(study_dir.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
    except json.JSONDecodeError:  # being rewritten
        return {}
    states = {}
    for trial_json, metadata_json in data["trial_data"]:
        trial, metadata = json.loads(trial_json), json.loads(metadata_json)
        states[trial["relative_logdir"]] = {
            "status": trial["status"],
            "failures": metadata["num_failures"],
            # The snapshot knows a checkpoint of the trial: a restored driver continues from it.
            "checkpointed": _snapshot_has_checkpoint(metadata_json),
        }
    return states


def _snapshot_has_checkpoint(metadata_json: str) -> bool:
    """Whether a trial's run metadata in Tune's experiment state holds a checkpoint (read the way Tune does)."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    manager = _TrainingRunMetadata.from_json_state(metadata_json).checkpoint_manager
    return manager is not None and manager.latest_checkpoint_result is not None


def _reported_epochs(trial_dir: Path) -> list[int]:
    """Every epoch the trial reported, in order, retries included."""
    return [json.loads(line)["epoch"] for line in (trial_dir / "result.json").read_text().splitlines() if line]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(30)


def _files_mentioning(root: Path, *needles: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n[:12]}..." for n in needles if n.encode() in data]
    return hits


# Joins through `connect` with node env vars, then reads them back from a task on each node.
_CLIENT = """
import os, sys, ray
from study.cluster.connect import connect
print(connect(sys.argv[1], env_vars={"HF_HOME": "/tmp/shared-hf-cache"}))
seen = ray.get([ray.remote(lambda: os.environ.get("HF_HOME")).options(scheduling_strategy="SPREAD").remote()
                for _ in range(4)])
print("HF_HOME on the nodes:", sorted(set(seen)))
"""


def _client_server_logs(root: Path) -> str:
    """Why a ray:// client could not start: the head's client server logs and its server processes."""
    logs = sorted(root.glob("h/session_*/logs/*client_server*")) + sorted(root.glob("h/session_*/logs/runtime_env*"))
    text = "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')[-1500:]}" for log in logs)
    ps = subprocess.run(["ps", "-eo", "pid,stat,etime,time,args"], check=False, capture_output=True, text=True).stdout
    servers = [line[:300] for line in ps.splitlines() if "ray.util.client.server" in line]
    return text + "\n--- client server processes (pid stat elapsed cpu args)\n" + "\n".join(servers)


def test_ray_client_and_gcs_addresses_join_only_with_the_token(two_nodes):
    client = f"ray://127.0.0.1:{two_nodes.client_port}"
    for _ in range(3):
        joined = subprocess.run(
            [sys.executable, "-c", _CLIENT, client], env=two_nodes.client_env, capture_output=True, text=True, timeout=180
        )
        # On a loaded 2-core machine the head's per-client server process has failed to start (Ray's
        # proxier gives up on it); each new client gets a new one. Anything else fails at once.
        if joined.returncode == 0 or "Starting Ray client server failed" not in joined.stderr:
            break
    assert joined.returncode == 0, joined.stderr[-2000:] + _client_server_logs(two_nodes.root)
    assert f"Joined the Ray cluster at {client} (2 nodes)" in joined.stdout
    assert "HF_HOME on the nodes: ['/tmp/shared-hf-cache']" in joined.stdout

    # Another token, straight to the GCS address: refused, with a message that says what to set.
    connect = "import sys; from study.cluster.connect import connect; print(connect(sys.argv[1]))"
    wrong_token = {**two_nodes.client_env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    refused = subprocess.run(
        [sys.executable, "-c", connect, two_nodes.head.address], env=wrong_token, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0
    assert "could not authenticate to the Ray cluster" in refused.stderr, refused.stderr[-2000:]
    assert "set RAY_AUTH_MODE=token and give the cluster's token" in refused.stderr


def test_smoke_grid_submitted_as_a_ray_job_runs_on_both_nodes(two_nodes, tmp_path):
    storage = tmp_path / "studies"
    submission = f"study-{secrets.token_hex(4)}"
    job = [
        sys.executable, "-m", "ray.scripts.scripts", "job", "submit",
        "--address", two_nodes.head.dashboard_url, "--submission-id", submission, "--",
        *_study_command("--epochs", "1", "--storage", str(storage), "--name", "job"),
    ]  # fmt: skip
    done = subprocess.run(job, env=two_nodes.client_env, capture_output=True, text=True, timeout=420)
    logs = done.stdout + done.stderr
    assert done.returncode == 0, logs[-3000:]
    assert "Joined the Ray cluster at" in logs and "(2 nodes)" in logs  # RAY_ADDRESS inside the job: joined

    saved = json.loads((storage / "job" / "results.json").read_text())
    assert sorted(t["name"] for t in saved) == ["minilm-adamw", "minilm-lion"]
    for trial in saved:
        assert trial["status"] == "finished", trial["error"]
        assert [row["epoch"] for row in trial["rows"]] == [0, 1]
        # Run files reach the study directory from whichever node ran the trial.
        assert (Path(trial["trial_dir"]) / "runs" / "builtin-smoke-dl.epoch1.trec").stat().st_size > 0
    # One CPU per node and one per trial: one trial ran on each node.
    on_head = _working_dirs(two_nodes.root / "h", "job")
    on_worker = _working_dirs(two_nodes.root / "w", "job")
    assert len(on_head) == 1 and len(on_worker) == 1 and on_head != on_worker

    # The study is a job on the dashboard's Jobs API, which answers only with the cluster's token.
    url = f"{two_nodes.head.dashboard_url}/api/jobs/{submission}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code == 401
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {two_nodes.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        info = json.loads(response.read())
    assert info["status"] == "SUCCEEDED" and "study.run" in info["entrypoint"]

    # Neither the Ray token nor an API key in the nodes' environment ends up in logs or results.
    assert FAKE_API_KEY not in logs and two_nodes.token not in logs
    assert _files_mentioning(storage, FAKE_API_KEY, two_nodes.token) == []


def test_a_killed_driver_resumes_without_rerunning_finished_trials(two_nodes, tmp_path):
    # One trial at a time, in grid order: minilm-adamw trains 1 epoch, then minilm-lion 3. The
    # driver dies once adamw is finished and lion is midway.
    storage = tmp_path / "studies"
    study = storage / "resume"
    config = _smoke_config(tmp_path / "study.yaml", storage, "resume", epochs=(1, 3), max_concurrent=1)
    log_path = tmp_path / "driver.log"
    driver = _start_driver(two_nodes, log_path, "--config", str(config))
    try:

        def adamw_done_lion_midway() -> bool:
            tune_state = {name.split("-")[1]: s for name, s in _tune_state(study).items()}
            state = {optimizer: s["status"] for optimizer, s in tune_state.items()}
            lion = [i for name, i in _last_checkpoint(study).items() if "-lion-" in name]
            # Killed only once Tune's snapshot holds a lion checkpoint: on a loaded machine the
            # snapshot can lag the checkpoint files, and a resume from it would restart lion.
            lion_saved = tune_state.get("lion", {}).get("checkpointed", False)
            return state.get("adamw") == "TERMINATED" and state.get("lion") == "RUNNING" and lion and lion[0] >= 1 and lion_saved

        _wait_for(adamw_done_lion_midway, driver, log_path)
        driver.kill()  # SIGKILL: no clean-up, as if the machine running the driver died
        driver.wait(30)
    finally:
        _stop(driver)
    (adamw_dir,) = study.glob("minilm-adamw-*")
    (lion_dir,) = study.glob("minilm-lion-*")
    adamw_files = {name: (adamw_dir / name).read_bytes() for name in ("result.json", STEP_LOG)}
    assert _reported_epochs(lion_dir)[-1] < 3
    spec_written = (study / "study_spec.json").stat().st_mtime_ns

    resumed = subprocess.run(
        [sys.executable, "-m", "study.run", "--resume", str(study), "--address", two_nodes.head.address],
        env=two_nodes.client_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    # The finished trial was not run again; the other continued from its last checkpoint.
    assert {name: (adamw_dir / name).read_bytes() for name in adamw_files} == adamw_files
    epochs = _reported_epochs(lion_dir)
    assert epochs.count(0) == 1 and sorted(set(epochs)) == [0, 1, 2, 3]
    saved = json.loads((study / "results.json").read_text())
    assert [(t["name"], t["status"], len(t["rows"])) for t in saved] == [
        ("minilm-adamw", "finished", 2),
        ("minilm-lion", "finished", 4),
    ]
    assert not list(study.rglob("*.tmp"))  # every result file was written whole
    # Tune wrote (and, on the resume, rewrote) the study through the filesystem that renames each
    # file into place whole (study/cluster/whole_files.py): its state, results and checkpoints.
    tuner_state = cloudpickle.loads((study / "tuner.pkl").read_bytes())
    assert isinstance(tuner_state["_run_config"].storage_filesystem.handler, WholeFileHandler)
    # Tune downloads the study's top-level files on a resume and uploads them back in place at every
    # state save, where a reader can catch them half-written; they stay out of its uploads.
    assert (study / "study_spec.json").stat().st_mtime_ns == spec_written


def _interval(trial_dir: Path) -> tuple[float, float]:
    """When a trial ran, from Tune's results (whole seconds): its first report's time less the time
    it had run by then, to its last report."""
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line]
    return rows[0]["timestamp"] - rows[0]["time_total_s"], rows[-1]["timestamp"]


def test_a_searchs_pairs_run_side_by_side_sharing_max_concurrent(two_nodes, tmp_path):
    # Two pairs (minilm x adamw, lion), 2 trials each. --max-concurrent 2 caps the whole search:
    # one slot per pair, so each pair runs its trials one after another, beside the other pair.
    import optuna

    storage = tmp_path / "studies"
    log_path = tmp_path / "driver.log"
    search = [
        "--search", "optuna", "--scale", "smoke", "--models", "minilm", "--optimizers", "adamw", "lion",
        "--num-samples", "2", "--epochs", "2", "--max-concurrent", "2", "--storage", str(storage), "--name", "side",
    ]  # fmt: skip
    driver = _start_driver(two_nodes, log_path, *search)
    try:
        assert driver.wait(timeout=600) == 0, log_path.read_text()[-3000:]
    finally:
        _stop(driver)
    log = log_path.read_text()
    directory = storage / "side"
    runs = {pair: [_interval(d) for d in sorted((directory / pair).glob("minilm-*-n*"))] for pair in ("minilm-adamw", "minilm-lion")}
    assert [len(r) for r in runs.values()] == [2, 2], runs

    # Trials of the two pairs ran at the same time (timestamps are whole seconds: more than 1 s of overlap).
    overlaps = [min(a[1], b[1]) - max(a[0], b[0]) for a in runs["minilm-adamw"] for b in runs["minilm-lion"]]
    assert max(overlaps) > 1, runs
    for first, second in (sorted(r) for r in runs.values()):  # each pair: its share of 1, one trial at a time
        assert second[0] >= first[1] - 1, runs
    print(f"side by side: intervals {runs}; largest overlap {max(overlaps):.1f} s")
    # ... on both nodes, and counted on one progress line
    for node in ("h", "w"):
        assert list((two_nodes.root / node).glob("session_*/artifacts/*/minilm-*/working_dirs/*")), node
    assert "Search: 4/4 trials done" in log

    # Each pair's outputs as when pairs ran one after another: its experiment, its Optuna study
    # (the thesis point first), its selected configuration.
    optuna_storage = f"sqlite:///{directory}/optuna.db"
    best = json.loads((directory / "best_configs.json").read_text())
    assert [p["pair"] for p in best["pairs"]] == ["minilm-adamw", "minilm-lion"]
    for pair in best["pairs"]:
        study = optuna.load_study(study_name=f"side.{pair['pair']}", storage=optuna_storage)
        assert [t.number for t in study.trials] == [0, 1] and all(t.state == t.state.COMPLETE for t in study.trials)
        assert study.trials[0].params == pair["thesis"]["params"] and pair["thesis"]["is_thesis"]
        configs = [json.loads(p.read_text()) for p in (directory / pair["pair"]).glob("*/params.json")]
        assert sorted(c["optuna_trial"] for c in configs) == [0, 1]
        assert {c["trial"]["optimizer"]["name"] for c in configs} == {pair["optimizer"]}
        assert "selected" in pair and pair["selected"]["test"]
    with (directory / "search_trials.csv").open() as trials:
        assert len(trials.read().strip().splitlines()) == 1 + 4


def test_a_trial_on_a_killed_node_finishes_on_the_head_from_its_last_checkpoint(two_nodes, tmp_path):
    # Runs last: it kills the module's worker node.
    storage = tmp_path / "studies"
    study = storage / "kill"
    log_path = tmp_path / "driver.log"
    # All ~480 smoke pairs and 10 epochs: seconds of training left when the node dies, even with
    # the faster training loop (with 4 epochs the trial sometimes finished before the kill).
    epochs = 10
    config = _smoke_config(tmp_path / "study.yaml", storage, "kill", epochs=(epochs, epochs), max_pairs=None)
    driver = _start_driver(two_nodes, log_path, "--config", str(config), "--max-failures", "2")
    try:
        # One trial runs on each node. Kill the worker node once its trial has checkpointed epoch 1
        # (of 4): the trial is then in the middle of training.
        def worker_trial_checkpointed() -> bool:
            on_worker = _working_dirs(two_nodes.root / "w", "kill")
            return bool(on_worker) and _last_checkpoint(study).get(next(iter(on_worker)), -1) >= 1

        _wait_for(worker_trial_checkpointed, driver, log_path, poll=0.05)
        two_nodes.worker.kill()
        assert driver.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    finally:
        _stop(driver)

    (killed,) = _working_dirs(two_nodes.root / "w", "kill")
    assert killed in _working_dirs(two_nodes.root / "h", "kill")  # the retry ran on the surviving node
    state = _tune_state(study)
    assert state[killed]["failures"] >= 1 and state[killed]["status"] == "TERMINATED"
    reported = _reported_epochs(study / killed)
    assert reported.count(0) == 1 and sorted(set(reported)) == list(range(epochs + 1))  # resumed, not restarted

    saved = {Path(t["trial_dir"]).name: t for t in json.loads((study / "results.json").read_text())}
    assert all(t["status"] == "finished" for t in saved.values())
    # The same final metrics as an uninterrupted run of that trial (here, without Ray).
    spec = StudySpec.model_validate_json((study / "study_spec.json").read_text())
    trial_spec = next(t for t in spec.trials if killed.startswith(f"{t.name}-"))
    reports: list[dict] = []
    run_trial(trial_spec, trial_dir=tmp_path / "uninterrupted", report=lambda metrics, _: reports.append(metrics))
    expected = {k: v for k, v in reports[-1].items() if not is_measurement(k)}
    final = saved[killed]["rows"][-1]
    assert {k: final[k] for k in expected} == expected
