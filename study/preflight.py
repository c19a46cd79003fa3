"""`python -m study.run ... --preflight`: check, without training, everything a costly run needs.

One line per check, each failure saying what to do, then an estimate of the study's GPU-hours from a
short measured training step. Checks (every trial's own settings):
- models: each loads (local directory, Hugging Face cache or hub; remote code pinned) and its
  non-persistent buffers match a fresh construction (trainables/buffers.py);
- data: each evaluation set and training source parses from its files, or its download package is
  installed and its cache holds it or its host answers;
- GPUs: the cards the trials ask for exist, each with at least the thesis's memory figure for the
  largest model (§4.4.1: MiniLM 8, GTE 16, ModernBERT 24 GB), on this machine or on every node of
  `--address`'s cluster;
- storage: the study directory is new (or resumable) and writable, from every node with `--address`;
- credentials: the W&B key with `--wandb online`; remote-code pins (STUDY_MODEL_REVISIONS).
Exit status 2 when any check fails, 0 otherwise.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from study.data.types import TrainingPair
    from study.spec import EvalSetSpec, TrainDataSpec, TrialSpec

EXIT_FAILED = 2
TIMED_STEPS = 2  # after one untimed step (allocations, kernel selection)
SYNTHETIC_WORDS = 60  # a download source gives no sample before its download: MS MARCO pairs are ~60-80 words
# package -> (cache env var, default cache, where in the cache MS MARCO lands, the host it downloads from)
_DOWNLOADS = {
    "ir_datasets": ("IR_DATASETS_HOME", Path.home() / ".ir_datasets", ("msmarco-passage",), "msmarco.z22.web.core.windows.net"),
    "datasets": (
        "HF_HOME",
        Path.home() / ".cache" / "huggingface",
        ("datasets/microsoft___ms_marco", "hub/datasets--microsoft--ms_marco"),
        "huggingface.co",
    ),
}


@dataclass(frozen=True)
class Check:
    """One line of the preflight: what was checked, whether it passed, and what was found or what to do."""

    what: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"[{'ok' if self.ok else 'FAIL'}] {self.what}: {self.detail}"


@dataclass(frozen=True)
class Context:
    """What the checks need beyond the trials."""

    storage: str
    name: str
    resume: bool = False
    address: str | None = None
    wandb: str = "off"


def run_preflight(trials: Sequence[TrialSpec], context: Context, *, extra_sets: Sequence[EvalSetSpec] = ()) -> int:
    """Print every check and the estimate; EXIT_FAILED when a check failed."""
    checks: list[Check] = []

    def record(check: Check) -> None:
        checks.append(check)
        print(check.line(), flush=True)

    models = check_models(trials, record)
    samples = check_data(trials, extra_sets, record)
    nodes = node_probes(context)
    for check in check_gpus(trials, nodes) + check_storage(context, nodes) + check_credentials(context):
        record(check)
    for line in estimate_gpu_hours(trials, models, samples):
        print(line)
    failed = [c for c in checks if not c.ok]
    print(f"preflight: {len(checks) - len(failed)} of {len(checks)} checks passed" + (f", {len(failed)} FAILED" if failed else ""))
    return EXIT_FAILED if failed else 0


def preflight_from_cli(
    trials: Sequence[TrialSpec], storage: str, name: str, args, extra_sets: Sequence[EvalSetSpec] = ()
) -> int:
    """`--preflight` of study/run.py (a grid or --config) and of a search (its validation set as `extra_sets`)."""
    context = Context(storage, name, resume=bool(args.resume), address=args.address, wandb=args.wandb)
    return run_preflight(trials, context, extra_sets=extra_sets)


def _attempt(what: str, check: Callable[[], str]) -> Check:
    """Run one check; its error message (which says what to do) becomes the failure's detail."""
    try:
        return Check(what, True, check())
    except Exception as err:  # noqa: BLE001 -- every failure is reported as a line, never a traceback
        text = " ".join(str(err).split()) or type(err).__name__
        return Check(what, False, text)


# --- models ------------------------------------------------------------------------------------------


def check_models(trials: Sequence[TrialSpec], record: Callable[[Check], None]) -> dict[str, tuple]:
    """model name -> (tokenizer, model) for each model that loaded with sane buffers."""
    loaded: dict[str, tuple] = {}
    for trial in _unique(trials, key=lambda t: t.model.name):
        spec = trial.model
        holder: list = []

        def load(spec=spec, trial=trial, holder=holder) -> str:
            from trainables.buffers import non_persistent_buffer_names
            from trainables.models import check_loadable_offline, load_cross_encoder

            check_loadable_offline(spec)  # pins, cache or hub: the error says which is missing
            tokenizer, model = load_cross_encoder(spec, padding_free=trial.training.padding_free)  # + buffer check
            holder.append((tokenizer, model))
            parameters = sum(p.numel() for p in model.parameters())
            buffers = len(non_persistent_buffer_names(model))
            return (
                f"{spec.checkpoint} loads as {type(model).__name__}, {parameters / 1e6:.1f}M parameters, "
                f"non-persistent buffers: {buffers}, all equal to a fresh construction's"
            )

        check = _attempt(f"model {spec.name}", load)
        record(check)
        if holder:
            loaded[spec.name] = holder[0]
    return loaded


# --- data --------------------------------------------------------------------------------------------


def check_data(
    trials: Sequence[TrialSpec], extra_sets: Sequence[EvalSetSpec], record: Callable[[Check], None]
) -> dict[str, list[TrainingPair]]:
    """Check every evaluation set and training source; return a few training pairs per source (by
    its JSON) for the step-time measurement (empty for a download source)."""
    sets = _unique([*extra_sets, *(e for t in trials for e in t.evaluation)], key=lambda e: e.name)
    for eval_spec in sets:
        record(_attempt(f"data {eval_spec.name}", lambda e=eval_spec: _check_eval_set(e)))
    samples: dict[str, list] = {}
    for trial in _unique(trials, key=lambda t: t.training.data.model_dump_json()):
        data = trial.training.data
        holder: list = []
        record(_attempt(f"training data {data.source}", lambda d=data, t=trial, h=holder: _check_training(d, t, h)))
        samples[data.model_dump_json()] = holder[0] if holder else []
    return samples


def _check_eval_set(spec: EvalSetSpec) -> str:
    from study.data import msmarco, registry

    registry.check_eval_set(spec)
    if spec.files is None and spec.name in msmarco.NAMED_SETS:
        if spec.name in msmarco.NOT_BUILT:
            msmarco.download_eval_set(spec.name)  # raises, saying what to do
        package = "datasets" if spec.name == "msmarco-v1.1-qna-dev" else "ir_datasets"
        return _download_reachable(package, f"evaluation set {spec.name}")
    eval_set = registry.load_eval_set(spec)  # files parse (every line), or the built-in set builds
    candidates = sum(len(c) for c in eval_set.candidates.values())
    return f"{len(eval_set.queries)} queries, {candidates} candidates, {sum(map(len, eval_set.qrels.values()))} judgments"


def _check_training(data: TrainDataSpec, trial: TrialSpec, holder: list) -> str:
    from study.data import msmarco, registry

    wanted = trial.training.batch_size * (TIMED_STEPS + 1)
    if data.file is not None:
        from study.data.formats import iter_triples
        from study.data.types import TrainingPair

        triples = list(itertools.islice(iter_triples(data.file), 1000))  # the start parses; sampling reads it all
        holder.append([TrainingPair(q, p, 1.0) for q, p, _ in triples[:wanted]])
        return f"{data.file}: the first {len(triples)} triples parse"
    if data.source == msmarco.TRAIN_SOURCE:
        return _download_reachable("ir_datasets", "the MS MARCO training triples")
    pairs = registry.load_training_pairs(data, seed=trial.training.seed)
    holder.append(pairs[:wanted])
    return f"{len(pairs)} training pairs"


def _download_reachable(package: str, what: str) -> str:
    """The package is installed, and its cache holds data or its host answers."""
    env, default, places, host = _DOWNLOADS[package]
    if importlib.util.find_spec(package) is None:
        raise RuntimeError(
            f"{what}: downloaded with {package}, which is not installed: pip install -e \".[data]\", or give "
            "the official files in the spec (`files:` per evaluation set, `file:` for the training triples)"
        )
    cache = Path(os.environ.get(env) or default)
    held = [cache / place for place in places if (cache / place).is_dir() and any((cache / place).iterdir())]
    if held:
        return f"{package} installed; its cache holds {held[0]} (whether it is complete shows when a trial loads it)"
    if _host_answers(host):
        return f"{package} installed; {host} answers (downloaded into {cache} by the first trial)"
    raise RuntimeError(
        f"{what}: not in {package}'s cache ({cache}, set by {env}), and {host} does not answer; download it on a "
        f"machine with internet into a cache this one reads ({env}), or give the official files in the spec"
    )


def _host_answers(host: str, timeout_s: float = 3.0) -> bool:
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") and host == "huggingface.co":
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


# --- nodes: GPUs and storage -------------------------------------------------------------------------


def node_probes(context: Context) -> list[dict]:
    """Per node: its GPUs' memory (GiB) and whether the storage is writable from it. This machine
    alone without --address; every alive node of the cluster with it (a task pinned to each node)."""
    probe = _make_probe(context.storage)
    if context.address is None:
        return [probe()]
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from study.cluster.connect import connect

        connect(context.address)
        remote = ray.remote(num_cpus=0)(probe)
        futures = [
            remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
            for node in ray.nodes()
            if node["Alive"]
        ]
        return ray.get(futures, timeout=120)
    except Exception as err:  # noqa: BLE001 -- reported as the nodes' check
        return [{"host": context.address, "error": " ".join(str(err).split())}]


def _make_probe(storage: str) -> Callable[[], dict]:
    """A self-contained function (it runs on other nodes, pickled by value) probing GPUs and storage."""

    def probe() -> dict:
        import os
        import shutil
        import socket
        import subprocess
        import uuid
        from pathlib import Path

        result: dict = {"host": socket.gethostname(), "gpus": [], "storage": None}
        if shutil.which("nvidia-smi"):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=30, check=False,
            ).stdout
            result["gpus"] = [int(v) / 1024 for v in out.split() if v.strip().isdigit()]  # MiB -> GiB
        name = f".preflight-probe-{uuid.uuid4().hex[:8]}"
        try:
            if "://" in storage:
                import pyarrow.fs

                filesystem, path = pyarrow.fs.FileSystem.from_uri(storage)
                target = f"{path.rstrip('/')}/{name}"
                filesystem.create_dir(path, recursive=True)
                with filesystem.open_output_stream(target) as out_stream:
                    out_stream.write(b"")
                filesystem.delete_file(target)
            else:
                directory = Path(storage).expanduser()
                directory.mkdir(parents=True, exist_ok=True)
                (directory / name).write_text("")
                (directory / name).unlink()
        except Exception as err:  # noqa: BLE001 -- the caller reports it
            result["storage"] = f"{type(err).__name__}: {err}"
        result["pid"] = os.getpid()
        return result

    return probe


def check_gpus(trials: Sequence[TrialSpec], nodes: list[dict]) -> list[Check]:
    from search_spaces.thesis import MODELS

    wanted = max(t.resources.gpus for t in trials)
    if wanted == 0:
        return [Check("GPUs", True, "the trials ask for none (resources.gpus 0): they run on CPUs")]
    failed = [n for n in nodes if "error" in n]
    if failed:
        return [Check("GPUs", False, f"could not probe the cluster at {failed[0]['host']}: {failed[0]['error']}")]
    floors = {t.model.name: MODELS[t.model.name].memory_gb for t in trials if not t.model.stand_in_for and t.model.name in MODELS}
    floor = max(floors.values(), default=0)
    cards = [(n["host"], gib) for n in nodes for gib in n["gpus"]]
    if not cards:
        return [Check("GPUs", False, f"the trials ask for up to {wanted:g} GPU each, but no node has one (nvidia-smi found "
                      "none): run on a machine or cluster with NVIDIA GPUs, or set resources.gpus: 0 (CPU, slow)")]
    small = [f"{host} {gib:.0f} GiB" for host, gib in cards if gib < floor]
    if small:
        return [Check("GPUs", False, f"{', '.join(small)}: below the {floor} GB the thesis needed for "
                      f"{max(floors, key=floors.get)} (§4.4.1); use cards with more memory or leave that model out (--models)")]
    per_node = max(len(n["gpus"]) for n in nodes)
    if per_node < math.ceil(wanted):
        return [Check("GPUs", False, f"a trial asks for {wanted:g} GPUs on one node, but the largest node has {per_node}")]
    need = f"; each holds the {floor} GB the largest model needed (§4.4.1)" if floor else ""
    return [Check("GPUs", True, f"{len(cards)} on {len(nodes)} node(s) ({', '.join(f'{g:.0f} GiB' for _, g in cards)}){need}")]


def check_storage(context: Context, nodes: list[dict]) -> list[Check]:
    from study.cluster.storage import check_location

    checks = [_attempt(f"storage {context.storage}", lambda: _storage_state(context, check_location))]
    if context.address is not None:
        bad = [f"{n['host']}: {n.get('error') or n['storage']}" for n in nodes if n.get("error") or n.get("storage")]
        detail = "; ".join(bad) if bad else f"written and deleted a probe file from each of {len(nodes)} node(s)"
        if bad:
            detail += " -- give every node the same writable storage (a shared directory or s3://, gs://)"
        checks.append(Check("storage from every node", not bad, detail))
    return checks


def _storage_state(context: Context, check_location) -> str:
    check_location(context.storage, context.name, resume=context.resume)
    return f"writable; study {context.name} " + ("can be resumed" if context.resume else "is new")


def check_credentials(context: Context) -> list[Check]:
    if context.wandb == "off":
        return [Check("W&B", True, "not used (--wandb off)")]

    def wandb_ready() -> str:
        from study.tracking.wandb_logger import api_key_available, check_wandb_installed

        check_wandb_installed()
        if context.wandb == "offline":
            return "installed; logs offline (sync later with `wandb sync`)"
        if not api_key_available():
            raise RuntimeError(
                "--wandb online needs a key: set WANDB_API_KEY or run `wandb login` (or use --wandb offline)"
            )
        return "installed; an API key is present"

    return [_attempt(f"W&B ({context.wandb})", wandb_ready)]


# --- the estimate ------------------------------------------------------------------------------------


def estimate_gpu_hours(
    trials: Sequence[TrialSpec], models: dict[str, tuple], samples: dict[str, list]
) -> list[str]:
    """Lines estimating the study's device-hours: measured seconds per training step x steps x GPUs per trial."""
    import torch

    on_gpu = torch.cuda.is_available() and any(t.resources.gpus > 0 for t in trials)
    lines = ["estimate (training steps only; evaluation adds to it):"]
    if not on_gpu:
        lines[0] = ("estimate: no GPU here (or the trials ask for none), so step times are measured on this CPU; "
                    "these are CPU-hours on this machine, not a GPU estimate (training only):")
    total = 0.0
    step_times: dict[str, float] = {}
    for trial in trials:
        if trial.model.name not in models:
            lines.append(f"  {trial.name}: not estimated: its model did not load")
            continue
        key = trial.model.name + trial.optimizer.name
        if key not in step_times:
            step_times[key] = measure_step_seconds(trial, *models[trial.model.name], samples.get(trial.training.data.model_dump_json(), []), on_gpu=on_gpu)
        steps = _steps(trial, samples)
        if steps is None:
            lines.append(f"  {trial.name}: {step_times[key]:.3f} s/step; step count unknown (set training.data.max_pairs)")
            continue
        hours = steps * step_times[key] * (trial.resources.gpus if on_gpu else 1) / 3600
        total += hours
        lines.append(f"  {trial.name}: {steps} steps x {step_times[key]:.3f} s/step = {hours:.3g} "
                     f"{'GPU' if on_gpu else 'CPU'}-hours" + (f" ({trial.resources.gpus:g} GPU)" if on_gpu else ""))
    if total:
        lines.append(f"  total: {total:.3g} {'GPU' if on_gpu else 'CPU'}-hours")
    return lines


def _steps(trial: TrialSpec, samples: dict[str, list]) -> int | None:
    data = trial.training.data
    if data.max_pairs is not None:
        pairs = data.max_pairs
    elif data.source == "builtin":
        from study.data import registry

        pairs = len(registry.load_training_pairs(data, seed=trial.training.seed))
    elif data.file is not None and Path(data.file).stat().st_size < 2**30:
        with open(data.file, "rb") as handle:  # each triple gives a positive and a negative pair
            pairs = 2 * sum(1 for line in handle if line.strip())
    else:
        return None
    return math.ceil(pairs / trial.training.batch_size) * trial.training.epochs


def measure_step_seconds(trial: TrialSpec, tokenizer, model, sample: list, *, on_gpu: bool) -> float:
    """Seconds per training step: the trial's own step (trainables/training.py) at its batch size on
    its first training pairs (or synthetic pairs of MS MARCO's length), one warm-up step untimed."""
    import copy

    import numpy as np
    import torch

    from study.data.tokenized import tokenize_pairs
    from trainables.models import model_input_names
    from trainables.optimizers import build_optimizer
    from trainables.training import train_one_epoch

    batch = trial.training.batch_size
    if len(sample) < batch * (TIMED_STEPS + 1):
        words = " ".join(["passage"] * SYNTHETIC_WORDS)
        sample = [type("Pair", (), {"query": "what is a reranker", "passage": words})()] * (batch * (TIMED_STEPS + 1))
    sample = sample[: batch * (TIMED_STEPS + 1)]
    device = torch.device("cuda" if on_gpu else "cpu")
    autocast = torch.bfloat16 if on_gpu and trial.training.precision == "bf16-mixed" else None
    model = copy.deepcopy(model).to(device)  # the loaded model stays untouched for the next optimizer
    tokens = tokenize_pairs(
        tokenizer,
        [p.query for p in sample],
        [p.passage for p in sample],
        max_length=trial.model.max_length,
        with_token_type_ids="token_type_ids" in model_input_names(model),
    )
    labels = np.tile(np.array([1.0, 0.0], dtype=np.float32), len(sample) // 2 + 1)[: len(sample)]
    optimizer = build_optimizer(model, trial.optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = [np.arange(i * batch, (i + 1) * batch) for i in range(TIMED_STEPS + 1)]

    def train(indices: list[np.ndarray]) -> None:
        train_one_epoch(
            model, optimizer, scheduler, tokens, labels, indices, device=device, autocast_dtype=autocast,
            grad_clip=trial.training.grad_clip, log_every=10**9, epoch=1, first_step=0, on_log=lambda _: None,
        )
        if on_gpu:
            torch.cuda.synchronize()

    train(batches[:1])
    start = time.perf_counter()
    train(batches[1:])
    return (time.perf_counter() - start) / TIMED_STEPS


def _unique(items: Iterable, *, key: Callable) -> list:
    seen: dict = {}
    for item in items:
        seen.setdefault(key(item), item)
    return list(seen.values())
