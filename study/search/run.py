"""Run a SearchSpec on Ray Tune: Optuna proposes, ASHA stops early, the study directory keeps it all.

Per model x optimizer, one Tune experiment (`<study>/<model>-<optimizer>/`), the pairs side by side
on the cluster (study/search/parallel.py: `max_concurrent` caps the whole search), each driven by Tune's
OptunaSearch over that pair's define-by-run space with a seeded multivariate TPE sampler; the
thesis settings are enqueued as the first point. Early stopping belongs to ASHA alone (OptunaSearch
gives its study a no-op pruner), on the validation metric after every epoch. The Optuna study lives
in persistent storage (SQLite in the study directory, or an RDB URL) and Tune's experiment state
holds the searcher's state, so `--resume` continues an interrupted search without re-running
finished trials. Afterwards the best configuration of each pair, selected on the validation set,
is evaluated on the test sets (study/search/report.py writes the outputs).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.measures import PRIMARY_MODE
from search_spaces import optuna_spaces as spaces
from search_spaces.optimizers import default_label
from study import results
from study.search.spec import SearchPair, SearchSpec, SearchTrial, study_dir
from study.spec import TrialSpec

if TYPE_CHECKING:
    import optuna

FINAL_DIR = "final"  # test-set evaluations of the selected checkpoints


class TrialSpecSpace:
    """The define-by-run function OptunaSearch calls: the pair's space, then its trial spec.

    Returns the validated TrialSpec under "trial" (what the unchanged trainable reads) and the
    Optuna trial number; OptunaSearch adds the sampled values themselves to the config.
    """

    def __init__(self, pair: SearchPair, score_metric: str) -> None:
        self.score_metric = score_metric  # ranks the checkpoints Tune keeps (trainables/reranker.py)
        self.space = spaces.SPACES[pair.trial.optimizer.name]
        self.ranges = pair.space_ranges()
        self.base = pair.trial.model_dump(mode="json")

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        params = self.space(trial, self.ranges)
        spec = TrialSpec.model_validate(spaces.apply_params(self.base, params))
        return {"trial": spec.model_dump(mode="json"), "optuna_trial": trial.number, "score_metric": self.score_metric}


def startup_trials(num_samples: int) -> int:
    """Random proposals before TPE takes over: Optuna's default 10, a third of a small budget."""
    return min(10, max(2, num_samples // 3))


def build_searcher(spec: SearchSpec, pair: SearchPair, *, storage: optuna.storages.BaseStorage | None = None):
    """Tune's OptunaSearch for one pair: seeded multivariate TPE, thesis point first, no pruner."""
    import optuna
    from study.search.searcher import MidEpochAwareOptunaSearch

    # `group` is marked experimental. A filter for the whole process, not catch_warnings: pairs build
    # their searchers in threads, and catch_warnings restores the filters of whichever thread left last.
    warnings.filterwarnings("ignore", "Argument ``group`` is an experimental", optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(
        seed=spec.seed,
        multivariate=True,
        group=True,  # joint TPE over the parameters that appear together
        constant_liar=True,  # parallel trials do not all propose the same point
        n_startup_trials=startup_trials(spec.num_samples),
    )
    return MidEpochAwareOptunaSearch(
        space=TrialSpecSpace(pair, spec.metric_key),
        metric=spec.metric_key,
        mode=PRIMARY_MODE,
        points_to_evaluate=[dict(pair.thesis_point)],
        sampler=sampler,
        study_name=spec.optuna_study_name(pair),
        storage=storage,
    )


def build_scheduler(spec: SearchSpec, pair: SearchPair):
    """ASHA on the validation metric after every epoch (grace period: one epoch) or, with step
    rungs, every `validate_every_steps` steps (grace period: that many); or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from study.search.spec import total_training_steps

    if spec.scheduler == "fifo":
        return FIFOScheduler()
    if spec.rungs == "steps":
        return ASHAScheduler(
            time_attr="global_step",  # every report has it; mid-epoch validations are rung points too
            metric=spec.metric_key,
            mode=PRIMARY_MODE,
            max_t=total_training_steps(pair.trial),
            grace_period=spec.validate_every_steps,
            reduction_factor=2,
        )
    return ASHAScheduler(
        time_attr="epoch",  # epoch 0 (before training) is reported too; rungs start at epoch 1
        metric=spec.metric_key,
        mode=PRIMARY_MODE,
        max_t=pair.trial.training.epochs,
        grace_period=1,
        reduction_factor=2,
    )


def open_storage(url: str):
    """The Optuna RDB storage at `url`; ValueError (password hidden) when it cannot be opened."""
    import optuna

    from study.search.spec import display_url

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(_with_driver(url), engine_kwargs=_engine_kwargs(url))
    except Exception as err:  # noqa: BLE001 -- any driver error means: cannot open it
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = " (install the PostgreSQL driver: pip install -e '.[search]')" if isinstance(err, ImportError) else ""
        raise ValueError(f"cannot open the Optuna storage {display_url(url)}: {reason}{hint}") from None


def _with_driver(url: str) -> str:
    # One PostgreSQL driver whatever SQLAlchemy's default: psycopg 3 (the `search` extra installs it).
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


def _engine_kwargs(url: str) -> dict:
    # SQLite: wait for a lock instead of failing (a dashboard may be reading it).
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def finished_trials(storage, spec: SearchSpec, pair: SearchPair) -> list[optuna.trial.FrozenTrial]:
    """The pair's Optuna trials that ended (complete, pruned or failed); [] before it started."""
    import optuna

    try:
        study = optuna.load_study(study_name=spec.optuna_study_name(pair), storage=storage)
    except KeyError:
        return []
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return study.get_trials(deepcopy=False, states=done)


def check_storage_for(spec: SearchSpec, *, resume: bool) -> None:
    """Before Ray starts: the storage opens, and holds this search's studies iff resuming."""
    import optuna

    storage = open_storage(spec.optuna_storage)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    ours = [spec.optuna_study_name(p) for p in spec.pairs]
    existing = [n for n in ours if n in names]
    if existing and not resume:
        raise ValueError(
            f"the Optuna storage already holds {', '.join(existing)}; pass --resume to continue that "
            "search, or choose another --name"
        )
    started = [p for p in spec.pairs if (study_dir(spec) / p.name).is_dir()]
    lost = [spec.optuna_study_name(p) for p in started if spec.optuna_study_name(p) not in names]
    if resume and lost:
        raise ValueError(
            f"--resume expects the Optuna storage of search {spec.name} to hold {', '.join(lost)}, but it does "
            "not; was the database removed or replaced?"
        )


@dataclass
class SearchOutcome:
    study_dir: Path
    complete: bool  # False: interrupted; `--resume` continues it
    pairs: list[dict] = field(default_factory=list)  # per model x optimizer: thesis and selected results
    paths: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_search(
    spec: SearchSpec, *, address: str | None = None, verbose: int = 0, command: str = "run_search() from Python"
) -> SearchOutcome:
    """Run (or continue) every pair's search, then select, evaluate on the test sets and report.
    `verbose` 1 adds Tune's per-trial table to the one progress line across all pairs."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Mid-epoch checkpoints are reported without the validation metric (trainables/trial.py).
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    import optuna

    from study.cluster.connect import check_trial_resources, connect
    from study.orchestrate import quiet_tune_logs
    from study.search.parallel import run_side_by_side
    from study.search.spec import save
    from study.tracking.progress import StudyProgress

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directory = study_dir(spec)
    print(f"Search directory: {directory}", flush=True)
    quiet_tune_logs(verbose)
    print(connect(address), flush=True)
    check_trial_resources({p.name: {"cpus": p.trial.resources.cpus, "gpus": p.trial.resources.gpus} for p in spec.pairs})
    save(spec, directory)  # once Ray is up and the trials fit: a refused start leaves no search behind
    from study.tracking.manifest import MANIFEST_FILE, write_manifest

    name = MANIFEST_FILE if not (directory / MANIFEST_FILE).exists() else MANIFEST_FILE.replace(".json", ".resumed.json")
    write_manifest(lambda _, text: (directory / name).write_text(text), spec.model_dump(mode="json"), command)

    storage = open_storage(spec.optuna_storage)
    # One line across every model x optimizer pair (each pair is its own Tuner).
    progress = StudyProgress(len(spec.pairs) * spec.num_samples, spec.metric_key, PRIMARY_MODE, label="Search")
    todo = []
    for pair in spec.pairs:
        already = min(len(finished_trials(storage, spec, pair)), spec.num_samples)
        progress.states |= {f"{pair.name}-{n}": "done" for n in range(already)}
        if already < spec.num_samples:  # else finished before an interruption
            todo.append(pair)

    trainable = _registered_trainable()  # here, in the main thread, once for every pair

    def search_pair(pair: SearchPair, max_concurrent: int | None) -> None:
        _fit_pair(
            spec, pair, directory, storage, trainable, max_concurrent=max_concurrent, verbose=verbose, progress=progress
        )
        if len(finished_trials(storage, spec, pair)) >= spec.num_samples:
            _fail_orphans(storage, spec, pair)

    # The pairs side by side, sharing the cluster and --max-concurrent (study/search/parallel.py).
    run_side_by_side(todo, search_pair, spec.max_concurrent)
    if any(len(finished_trials(storage, spec, pair)) < spec.num_samples for pair in todo):
        return SearchOutcome(directory, complete=False)
    return finalize(spec, storage)


def _fail_orphans(storage, spec: SearchSpec, pair: SearchPair) -> None:
    """Optuna trials still running after the pair's search ended were asked by a driver that was
    killed before Tune saved its state; they never ran to the end, so they are marked failed."""
    import optuna

    study = optuna.load_study(study_name=spec.optuna_study_name(pair), storage=storage)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _registered_trainable() -> str:
    """Registers the trial function with Tune and returns the name it goes by. Each Tuner would
    otherwise register it itself, from its pair's thread, and Tune's registry is not thread-safe
    (two pairs starting at once raised "dictionary changed size during iteration" in Ray 2.60)."""
    from ray import tune
    from ray.tune.experiment import Experiment

    from trainables.reranker import train_reranker, trial_resources

    trainable = tune.with_resources(train_reranker, trial_resources)
    name = Experiment.get_trainable_name(trainable)  # the name Tune would give it itself
    tune.register_trainable(name, trainable)
    return name


def _fit_pair(
    spec: SearchSpec,
    pair: SearchPair,
    directory: Path,
    storage,
    trainable: str,
    *,
    max_concurrent: int | None,
    verbose: int,
    progress,
) -> None:
    """One pair's Tune experiment, new or restored, running the registered `trainable`;
    `max_concurrent`: the pair's share of the search's cap."""
    from ray import tune

    from study.cluster.whole_files import sweep_temporaries, tune_storage
    from trainables.trial import CHECKPOINT_SCORE

    storage_options = tune_storage(str(directory))  # every file renamed into place whole
    experiment = directory / pair.name
    if tune.Tuner.can_restore(experiment):
        sweep_temporaries(experiment)  # what a killed driver was writing: the last whole version stays
        # Tune restores the searcher (TPE state, Optuna trials in flight), the scheduler and every
        # trial: finished ones stay finished, interrupted ones continue from their last checkpoint.
        tuner = tune.Tuner.restore(
            str(experiment),
            trainable=trainable,
            resume_unfinished=True,
            storage_filesystem=storage_options["storage_filesystem"],
        )
        _share_progress(tuner, progress)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=build_searcher(spec, pair, storage=storage),
                scheduler=build_scheduler(spec, pair),
                num_samples=spec.num_samples,
                max_concurrent_trials=max_concurrent,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=pair.name,
                **storage_options,
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=spec.checkpoints_to_keep,
                    checkpoint_score_attribute=CHECKPOINT_SCORE,  # the metric; mid-epoch checkpoints rank last
                    checkpoint_score_order=PRIMARY_MODE,
                ),
                failure_config=tune.FailureConfig(max_failures=0),
                progress_reporter=_progress_table(spec, pair),
                callbacks=[progress],
                verbose=verbose,
            ),
        )
    tuner.fit()


def _share_progress(tuner, progress) -> None:
    """A restored Tuner brings back a pickled copy of the progress callback; the search's own one
    replaces it, so pairs running side by side keep one line between them."""
    from study.tracking.progress import StudyProgress

    local = getattr(tuner, "_local_tuner", None)  # None through a ray:// client: the copy stays
    config = local.get_run_config() if local is not None else None
    if config is not None and config.callbacks:
        config.callbacks = [progress if isinstance(c, StudyProgress) else c for c in config.callbacks]


def _trial_name(trial) -> str:
    config = trial.config["trial"]
    return f"{config['model']['name']}-{config['optimizer']['name']}-n{trial.config['optuna_trial']:03d}-{trial.trial_id}"


def _progress_table(spec: SearchSpec, pair: SearchPair):
    from ray.tune import CLIReporter

    return CLIReporter(
        metric_columns={
            "epoch": "epoch",
            "global_step": "step",
            "train_loss": "train loss",
            spec.metric_key: f"{spec.metric} (validation)",
        },
        parameter_columns={"optuna_trial": "#", **{name: name for name in pair.space_ranges()}},
        metric=spec.metric_key,
        mode=PRIMARY_MODE,
        sort_by_metric=True,
        max_report_frequency=30,
    )


# ---- after the search: select on validation, report on test ------------------------------------


def load_search_trials(spec: SearchSpec, pair: SearchPair) -> list[SearchTrial]:
    trials = []
    for result in results.load_trials(study_dir(spec) / pair.name):
        config = json.loads((Path(result.trial_dir) / "params.json").read_text())
        params = {name: config[name] for name in spaces.HYPERPARAMETERS if name in config}
        trials.append(
            SearchTrial(pair.name, int(config["optuna_trial"]), params, result, params == pair.thesis_point)
        )
    return sorted(trials, key=lambda t: t.optuna_trial)


def select_best(trials: list[SearchTrial], metric_key: str) -> tuple[SearchTrial, int, float] | None:
    """The (trial, epoch) with the best validation value; ties go to the thesis, then earlier trials."""
    candidates = []
    for trial in trials:
        best = trial.best_epoch(metric_key)
        if best is not None:
            candidates.append((best[0], trial.is_thesis, -trial.optuna_trial, trial, best[1]))
    if not candidates:
        return None
    value, _, _, trial, epoch = max(candidates, key=lambda c: c[:3])
    return trial, epoch, value


def checkpoint_of(trial: SearchTrial, epoch: int) -> Path | None:
    """The kept checkpoint of that epoch (Tune keeps the best few by the validation metric)."""
    for row in trial.result.rows:
        name = row.get("checkpoint_dir_name")
        if row["epoch"] == epoch and name and (Path(trial.result.trial_dir) / name).is_dir():
            return Path(trial.result.trial_dir) / name
    return None


def finalize(spec: SearchSpec, storage=None) -> SearchOutcome:
    """Select per pair on validation, evaluate thesis and selected checkpoints on the test sets, report."""
    import optuna

    from study.search import report as search_report

    storage = storage or open_storage(spec.optuna_storage)
    directory = study_dir(spec)
    outcome = SearchOutcome(directory, complete=True)
    all_trials: list[SearchTrial] = []
    jobs: dict[tuple[str, int, int], tuple[SearchTrial, int, list[dict]]] = {}
    for pair in spec.pairs:
        trials = load_search_trials(spec, pair)
        all_trials += trials
        entry: dict[str, Any] = {"pair": pair.name, "model": pair.trial.model.name, "optimizer": pair.trial.optimizer.name}
        outcome.pairs.append(entry)
        thesis = next((t for t in trials if t.is_thesis), None)
        for role, picked in (("thesis", _with_best_epoch(thesis, spec)), ("selected", select_best(trials, spec.metric_key))):
            if picked is None:
                what = default_label(pair.trial.optimizer.name) if role == "thesis" else role
                outcome.notes.append(f"{pair.name}: no {what} trial has a validation result")
                continue
            trial, epoch, value = picked
            entry[role] = _describe(trial, epoch, value, spec)
            # the thesis point may be the selected one: evaluate each checkpoint once
            jobs.setdefault((pair.name, trial.optuna_trial, epoch), (trial, epoch, []))[2].append(entry[role])
    _evaluate_on_test_sets(spec, list(jobs.values()), outcome.notes)

    studies = {
        pair.name: optuna.load_study(study_name=spec.optuna_study_name(pair), storage=storage) for pair in spec.pairs
    }
    outcome.paths = search_report.write_outputs(spec, directory, outcome.pairs, all_trials, studies, outcome.notes)
    return outcome


def _with_best_epoch(trial: SearchTrial | None, spec: SearchSpec) -> tuple[SearchTrial, int, float] | None:
    best = trial.best_epoch(spec.metric_key) if trial else None
    return (trial, best[1], best[0]) if best else None


def _describe(trial: SearchTrial, epoch: int, value: float, spec: SearchSpec) -> dict[str, Any]:
    return {
        "optuna_trial": trial.optuna_trial,
        "is_thesis": trial.is_thesis,
        "params": trial.params,
        "epoch": epoch,
        "selected_on": spec.validation_set,
        "validation": {spec.metric_key: value},
        "trial_dir": trial.result.trial_dir,
        "test": {},
    }


def _evaluate_on_test_sets(spec: SearchSpec, jobs: list[tuple[SearchTrial, int, list[dict]]], notes: list[str]) -> None:
    """Evaluate each selected checkpoint once: in a Ray task holding the trial's GPU where it had one,
    else here (this process has the libraries loaded already; a fresh worker would import them again)."""
    import ray

    from trainables.evaluate_checkpoint import evaluate_checkpoint

    pending = []
    for trial, epoch, described in jobs:
        checkpoint = checkpoint_of(trial, epoch)
        if checkpoint is None:
            notes.append(f"{trial.pair}: the checkpoint of trial {trial.optuna_trial}, epoch {epoch} was not kept")
            continue
        trial_spec = TrialSpec.model_validate(json.loads((Path(trial.result.trial_dir) / "params.json").read_text())["trial"])
        tag = f"{trial.pair}-n{trial.optuna_trial:03d}-epoch{epoch}"
        out_dir = study_dir(spec) / FINAL_DIR / tag
        args = (trial_spec, checkpoint, list(spec.test_sets))
        kwargs = {"out_dir": out_dir, "run_tag": tag, "epoch": epoch}
        if trial_spec.resources.gpus > 0:
            task = ray.remote(num_cpus=trial_spec.resources.cpus, num_gpus=trial_spec.resources.gpus)(evaluate_checkpoint)
            pending.append((task.remote(*args, **kwargs), out_dir, described))
        else:
            pending.append((evaluate_checkpoint(*args, **kwargs), out_dir, described))
    for result, out_dir, described in pending:
        metrics = ray.get(result) if isinstance(result, ray.ObjectRef) else result
        for entry in described:
            entry["test"] = metrics
            entry["test_dir"] = str(out_dir)
