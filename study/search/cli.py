"""`python -m study.run --search optuna ...`: the search's options and its command.

Only argparse is imported at module level (study/run.py imports this for `--help`); the search
is validated, and its storage opened, before Ray starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from study.cli_errors import print_bad_input

SEARCHES: tuple[str, ...] = ("optuna",)
DEFAULT_NUM_SAMPLES = 20
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl+C: the search can be resumed
# options that only a search takes: argparse dest -> flag
SEARCH_ONLY = {
    "num_samples": "--num-samples",
    "scheduler": "--scheduler",
    "rungs": "--rungs",
    "validate_every_steps": "--validate-every-steps",
    "metric": "--metric",
    "seed": "--seed",
    "range": "--range",
    "optuna_storage": "--optuna-storage",
}


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "hyperparameter search (--search optuna)",
        "Optuna (TPE) proposes settings around the thesis grid, starting from the thesis's own; ASHA stops "
        "weak trials after each epoch; the best setting per model x optimizer is selected on the "
        "validation set and reported on the test sets.",
    )
    group.add_argument("--num-samples", type=int, help=f"trials per model x optimizer (default {DEFAULT_NUM_SAMPLES})")
    group.add_argument("--scheduler", help="asha (early stopping per epoch; default) | fifo (every trial runs all epochs)")
    group.add_argument(
        "--rungs",
        help="ASHA's rungs: epochs (default at smoke/demo) | steps (default at full: validate inside "
        "epochs too, so a weak setting stops within the first epoch)",
    )
    group.add_argument(
        "--validate-every-steps",
        type=int,
        metavar="STEPS",
        help="step rungs: steps between validations (default: a tenth of an epoch)",
    )
    group.add_argument("--metric", help="validation metric that selects and stops trials (default nDCG@10)")
    group.add_argument("--seed", type=int, help="seed of the TPE sampler (default 12)")
    group.add_argument(
        "--range",
        action="append",
        metavar="[OPT.]NAME=LOW:HIGH",
        help="override a range, e.g. lion.lr=1e-6:3e-5 or schedule=constant,cosine (repeatable); "
        "names: lr beta1 beta2 weight_decay schedule warmup_steps",
    )
    group.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="Optuna storage (default sqlite:///<study dir>/optuna.db; postgresql://... for clusters)",
    )


def search_options_given(args: argparse.Namespace) -> list[str]:
    """Search-only flags on the command line (an error with --grid or --config)."""
    return [flag for dest, flag in SEARCH_ONLY.items() if getattr(args, dest, None) not in (None, False)]


def main(args: argparse.Namespace) -> int:
    try:
        spec = resolve_search(args)
        if args.print_spec:
            import yaml

            from study.search.spec import display_url

            shown = spec.model_dump(mode="json") | {"optuna_storage": display_url(spec.optuna_storage)}
            print(yaml.safe_dump(shown, sort_keys=False), end="")
            return 0
        if args.preflight:
            from study.preflight import preflight_from_cli
            from study.spec import EvalSetSpec

            trials = [pair.trial for pair in spec.pairs]
            sets = [EvalSetSpec(name=spec.validation_set), *spec.test_sets]
            print(f"(a search runs up to {spec.num_samples} trials per model x optimizer; the estimate is per trial)")
            return preflight_from_cli(trials, spec.storage, spec.name, args, sets)
        preflight(spec, resume=args.resume)
    except Exception as err:  # noqa: BLE001 -- every bad input becomes one paragraph and exit 2
        return print_bad_input(err)

    print(describe(spec, resume=args.resume), flush=True)
    from study.cluster.connect import ClusterTooSmall
    from study.search.run import run_search
    from study.tracking.manifest import command_line

    try:
        outcome = run_search(
            spec,
            address=args.address,
            verbose=int(getattr(args, "verbose", False)),
            command=command_line("study.run", getattr(args, "argv", None)),
        )
    except ClusterTooSmall as err:  # found once Ray is up; nothing was started
        return print_bad_input(err)
    if not outcome.complete:
        print(
            f"\nSearch interrupted; finished trials are kept in {outcome.study_dir}. Continue it with:\n"
            f"  python -m study.run --search optuna --resume --name {spec.name} --storage {spec.storage}"
        )
        return EXIT_INTERRUPTED
    print(report(spec, outcome))
    return 0 if all("selected" in pair for pair in outcome.pairs) else 1


def resolve_search(args: argparse.Namespace):
    from study.cluster.storage import check_local_storage, is_uri
    from study.names import check_at_least, check_name
    from study.search import spec as search_spec

    check_name(args.search, SEARCHES, what="search")
    check_at_least("--max-concurrent", args.max_concurrent, 1)
    check_at_least("--epochs", args.epochs, 1)
    check_at_least("--num-samples", args.num_samples, 1)
    storage = args.storage or "studies"
    if is_uri(storage):
        check_local_storage(storage, what="--search")
    if args.resume:
        if isinstance(args.resume, str):  # --resume STUDY_DIR
            directory = args.resume
        elif args.name:
            directory = search_spec.study_dir_of(storage, args.name)
        else:
            raise ValueError("--resume expects the search's directory (--resume DIR) or --name NAME (and its --storage)")
        spec = search_spec.load(directory)
        search_spec.check_resume_options(
            spec,
            {
                "--scale": args.scale,
                "--num-samples": args.num_samples,
                "--scheduler": args.scheduler,
                "--rungs": args.rungs,
                "--validate-every-steps": args.validate_every_steps,
                "--metric": args.metric,
                "--seed": args.seed,
                "--optuna-storage": args.optuna_storage,
            },
        )
        if args.models or args.optimizers or args.epochs or args.range:
            raise ValueError(
                "--resume continues a search as it was started; drop --models, --optimizers, --epochs and --range"
            )
        if args.max_concurrent is not None:  # how many run at once may change between runs
            spec = search_spec.SearchSpec.model_validate(spec.model_dump() | {"max_concurrent": args.max_concurrent})
        return spec
    return search_spec.build_search(
        **search_options(args),
        optimizers=_split(args.optimizers),
        num_samples=args.num_samples if args.num_samples is not None else DEFAULT_NUM_SAMPLES,
        name=args.name,
        storage=storage,
    )


def search_options(args: argparse.Namespace) -> dict:
    """build_search's keyword arguments from the command line, defaults filled in (also --compare's)."""
    return {
        "scale": args.scale or "full",
        "models": _split(args.models),
        "epochs": args.epochs,
        "max_concurrent": args.max_concurrent,
        "scheduler": args.scheduler or "asha",
        "rungs": args.rungs,
        "validate_every": args.validate_every_steps,
        "metric": args.metric or "nDCG@10",
        "seed": args.seed if args.seed is not None else 12,
        "ranges": args.range or (),
        "optuna_storage": args.optuna_storage,
    }


def preflight(spec, *, resume: bool) -> None:
    """Everything that can fail before Ray starts: data, models, the study directory, the storage."""
    from study.cluster.storage import check_local_storage
    from study.data import registry
    from study.search.run import check_storage_for
    from study.search.spec import SPEC_FILE, study_dir
    from trainables.models import check_loadable_offline

    from study.spec import EvalSetSpec

    check_local_storage(spec.storage, what="--search")  # first: the cheapest check
    for pair in spec.pairs:
        registry.check_available([EvalSetSpec(name=spec.validation_set), *spec.test_sets], pair.trial.training.data)
    registry.check_files(spec.test_sets, [pair.trial.training.data for pair in spec.pairs])
    for pair in spec.pairs:
        check_loadable_offline(pair.trial.model)
    if not resume and (study_dir(spec) / SPEC_FILE).exists():
        raise ValueError(f"search {spec.name} already exists in {study_dir(spec)}; pass --resume to continue it")
    check_storage_for(spec, resume=resume)


def describe(spec, *, resume: bool) -> str:
    from search_spaces.optimizers import default_label
    from study.scales import SCALES
    from study.search.spec import display_url

    verb = "Resuming" if resume else "Search"
    lines = [
        f"{verb} {spec.name}: Optuna TPE (seed {spec.seed}), {spec.num_samples} trials per model x optimizer, "
        f"scheduler {spec.scheduler}"
        + (f" (rungs every {spec.validate_every_steps} steps)" if spec.scheduler == "asha" and spec.rungs == "steps" else "")
        + f", scale {spec.scale}",
        f"  selects on {spec.metric_key}; reports on {', '.join(e.name for e in spec.test_sets)}",
        f"  Optuna storage: {display_url(spec.optuna_storage)}",
    ]
    scale = SCALES.get(spec.scale)
    if scale:
        lines.append(f"  {scale.summary}")
    for pair in spec.pairs:
        stand_in = f"  [STAND-IN for {pair.trial.model.stand_in_for}]" if pair.trial.model.stand_in_for else ""
        point = ", ".join(f"{k}={v}" for k, v in pair.thesis_point.items())
        label = default_label(pair.trial.optimizer.name)
        lines.append(f"  {pair.name:<18} starts from the {label} point: {point}{stand_in}")
    return "\n".join(lines)


def report(spec, outcome) -> str:
    from study import results
    from study.search import report as search_report
    from study.search.spec import display_url

    lines = [
        "",
        f"Selected on {spec.validation_set} ({spec.metric}); reported on "
        f"{', '.join(e.name for e in spec.test_sets)}:",
        results.format_table(search_report.best_rows(spec, outcome.pairs)),
        "",
        results.format_table(search_report.hyperparameter_rows(outcome.pairs)),
    ]
    lines += [f"note: {note}" for note in outcome.notes]
    lines += ["", f"Study directory: {outcome.study_dir}"]
    lines += [f"  best checkpoint of {line}" for line in best_checkpoints(outcome)]
    lines += [f"  {kind}: {path}" for kind, path in outcome.paths.items()]
    lines.append(f"  open the Optuna study: optuna-dashboard {display_url(spec.optuna_storage)}")
    return "\n".join(lines)


def best_checkpoints(outcome) -> list[str]:
    """Per pair: the selected configuration's checkpoint (on validation) and how to export it."""
    from study.export import best_checkpoint

    lines = []
    for pair in outcome.pairs:
        try:
            best = best_checkpoint(outcome.study_dir / pair["pair"])
        except ValueError:
            continue
        lines.append(
            f"{pair['pair']} ({best.metric} = {best.value:.4f}): {best.path}\n"
            f"    export it: python -m study.export {outcome.study_dir / pair['pair']} --out DIR"
        )
    return lines


def _split(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for value in values for v in value.split(",") if v]
