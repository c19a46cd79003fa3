"""Command line: `python -m study.run --grid thesis [--scale smoke|demo|full] ...`.

Only argparse is imported at start-up, so `--help` is instant; the spec is validated (and models
and data checked) before Ray or torch are imported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from study.cli_errors import print_bad_input
from study.search import cli as search_cli
from study.search import compare


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.run",
        description="Fine-tune cross-encoder rerankers with Lion or AdamW on Ray Tune and evaluate "
        "them with IR metrics after every epoch.",
        epilog="Example: python -m study.run --grid thesis --scale demo",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--grid",
        help="a built-in grid: thesis (the thesis's 3 models x {AdamW, Lion}) | thesis-literal "
        "(the same with Table 4.1's schedules read literally)",
    )
    source.add_argument("--config", metavar="STUDY.yaml", help="a study spec in YAML (see --print-spec)")
    source.add_argument("--search", metavar="optuna", help="a hyperparameter search around the thesis grid")
    source.add_argument(
        "--compare", nargs="+", metavar="O", help="tuned against tuned: an equal-budget search per optimizer, then seeds"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="STUDY_DIR",
        help="continue a study whose driver stopped (its directory or URI): finished trials are kept, "
        "the others continue from their last checkpoint; with --search, the search's directory or --name; "
        "a comparison's directory continues the comparison (its search, then its confirmation)",
    )
    parser.add_argument(
        "--scale",
        help="smoke (tiny stand-ins, minutes on a CPU) | demo (real MiniLM weights, offline) | "
        "full (the thesis's models and data; default)",
    )
    parser.add_argument("--models", nargs="+", metavar="M", help="only these models (minilm gte modernbert)")
    parser.add_argument(
        "--optimizers",
        nargs="+",
        metavar="O",
        help="these optimizers: any of adamw lion adafactor schedulefree_adamw adan "
        "(search_spaces/optimizers.py; default: the thesis's adamw lion)",
    )
    parser.add_argument("--epochs", type=int, help="override the number of training epochs")
    parser.add_argument(
        "--storage", help="directory or URI (s3://, gs://) holding study results (default: ./studies)"
    )
    parser.add_argument("--name", help="study name (default: <grid>-<scale>-<timestamp>)")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        help="trials running at once (default: as resources allow); a search's pairs, which run side by side, share it",
    )
    parser.add_argument("--address", help="join an existing Ray cluster (auto | HOST:PORT | ray://HOST:10001)")
    parser.add_argument(
        "--seeds",
        metavar="S,S,...",
        help="repeat every trial once per seed, e.g. 12,13,14 (default: the grid's seed, 12); "
        "tables then show mean +- 95%% CI",
    )
    parser.add_argument(
        "--wandb",
        default="off",
        choices=("off", "offline", "online"),
        help="log every trial to Weights & Biases, one run per trial grouped by study (default: off; "
        "online without WANDB_API_KEY logs offline)",
    )
    parser.add_argument(
        "--max-failures", type=int, help="retries per trial after a failure, each from its last checkpoint (default 0)"
    )
    parser.add_argument(
        "--node-env",
        action="append",
        metavar="NAME=VALUE",
        help="set in every trial process on every node, e.g. HF_HOME=/cache/hf (repeatable; no credentials; "
        "applies with --config and --resume too: it is not saved with the study)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show Ray Tune's per-trial status table every 30 s and its log lines "
        "(default: one progress line for the whole study)",
    )
    parser.add_argument("--print-spec", action="store_true", help="print the resolved study as YAML and exit")
    parser.add_argument(
        "--preflight",
        action="store_true",
        help="check without training that models, data, GPUs, storage and credentials are ready, estimate the "
        "GPU-hours, and exit (2 when a check fails)",
    )
    search_cli.add_search_arguments(parser)
    compare.add_compare_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.grid or args.config or args.search or args.compare or isinstance(args.resume, str)):
        parser.error("one of --grid, --config, --search, --compare or --resume STUDY_DIR is required")
    if args.compare is not None or (
        isinstance(args.resume, str) and not (args.grid or args.config or args.search) and compare.is_comparison(args.resume)
    ):
        return compare.main(args)  # starts or continues a comparison
    if args.budget is not None or args.confirm_seeds is not None:
        return print_bad_input(ValueError("--budget and --confirm-seeds only apply to --compare"))
    if args.search is not None:
        args.argv = None if argv is None else list(argv)  # for the search's manifest
        return search_cli.main(args)
    try:
        spec = resolve_spec(args)
    except Exception as err:  # noqa: BLE001 -- every bad input becomes one paragraph and exit 2
        return print_bad_input(err)

    if args.print_spec:
        import yaml

        from study.data.registry import protocol

        for evaluation in spec.trials[0].evaluation:
            print(f"# evaluation {evaluation.name}: {protocol(evaluation)}")
        print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    if args.preflight:
        from study.preflight import preflight_from_cli

        return preflight_from_cli(spec.trials, spec.storage, spec.name, args)

    try:
        from study.cluster.connect import check_address
        from study.cluster.storage import check_location

        check_location(spec.storage, spec.name, resume=args.resume is not None)
        check_address(args.address)
        preflight(spec)
        if args.wandb != "off":
            from study.tracking.wandb_logger import check_wandb_installed

            check_wandb_installed()
    except (RuntimeError, ValueError) as err:
        return print_bad_input(err)

    print(describe(spec), flush=True)
    from study.orchestrate import run_study
    from study.reporting.report import write_report
    from study.tracking.manifest import command_line

    from study.cluster.connect import ClusterTooSmall

    try:
        outcome = run_study(
            spec,
            address=args.address,
            resume=args.resume is not None,
            env_vars=_node_env(args.node_env),
            wandb=args.wandb,
            verbose=int(args.verbose),
            command=command_line("study.run", None if argv is None else list(argv)),
        )
    except ClusterTooSmall as err:  # found once Ray is up; nothing was started
        return print_bad_input(err)
    print(report(outcome))
    print(f"  report: {write_report(outcome.study_dir).markdown}")
    failed = [t for t in outcome.trials if t.status != "finished"]
    return 1 if failed else 0


def resolve_spec(args: argparse.Namespace):
    from study import grids
    from study.names import check_at_least

    if search_cli.search_options_given(args):
        raise ValueError(f"{', '.join(search_cli.search_options_given(args))} only apply to --search")
    models = _split(args.models)
    optimizers = _split(args.optimizers)
    check_at_least("--epochs", args.epochs, 1)
    check_at_least("--max-concurrent", args.max_concurrent, 1)
    check_at_least("--max-failures", args.max_failures, 0)
    _node_env(args.node_env)
    if args.resume is True:
        raise ValueError("--resume expects the study directory to continue: --resume STUDY_DIR")
    if args.resume and (args.grid or args.config):
        raise ValueError("--resume continues a saved study; it takes no --grid or --config")
    if args.resume:
        return _resumed_spec(args)
    if args.config and args.scale:
        raise ValueError("--scale applies to --grid; a --config study sets `scale` (and its trials) in the file")
    if args.config:
        spec = grids.load_study_file(args.config)
    else:
        spec = grids.build_study(args.grid, scale=args.scale or "full", optimizers=optimizers)
    if args.seeds:
        spec = grids.with_seeds(spec, _seeds(args.seeds))
    spec = grids.restrict(
        spec,
        models=models,
        optimizers=optimizers,
        epochs=args.epochs,
        name=args.name,
        storage=args.storage,
        max_concurrent=args.max_concurrent,
    )
    if args.max_failures is not None:
        spec = type(spec).model_validate(spec.model_dump() | {"max_failures": args.max_failures})
    return spec


def _resumed_spec(args: argparse.Namespace):
    """The saved study, unchanged: Tune continues it with the settings it started with."""
    from study.cluster.storage import load_study_spec

    changed = [
        f"--{name.replace('_', '-')}"
        for name in ("models", "optimizers", "epochs", "name", "storage", "max_concurrent", "max_failures", "seeds", "scale")
        if getattr(args, name) is not None
    ]
    if changed:
        raise ValueError(f"--resume continues the study as it was saved, so it takes no {', '.join(changed)}")
    return load_study_spec(args.resume)


def _node_env(pairs: Sequence[str] | None) -> dict[str, str]:
    from study.cluster.connect import check_env_vars

    env = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--node-env expects NAME=VALUE, but got {pair!r}")
        env[name] = value
    check_env_vars(env)
    return env


def preflight(spec) -> None:
    """Everything that can fail before Ray starts: models loadable here, data available."""
    from study.data import registry
    from trainables.models import check_loadable_offline

    for trial in spec.trials:
        registry.check_available(list(trial.evaluation), trial.training.data)
    registry.check_files([e for t in spec.trials for e in t.evaluation], [t.training.data for t in spec.trials])
    for trial in spec.trials:
        check_loadable_offline(trial.model)


def describe(spec) -> str:
    from study.scales import SCALES

    scale = SCALES.get(spec.scale)
    lines = [f"Study {spec.name}: {len(spec.trials)} trials, scale {spec.scale}"]
    if scale:
        lines.append(f"  {scale.summary}; needs {scale.needs}")
    from study.data.registry import protocol

    for evaluation in spec.trials[0].evaluation:
        lines.append(f"  evaluation {evaluation.name}: {protocol(evaluation)}")
    for trial in spec.trials:
        stand_in = f"  [STAND-IN for {trial.model.stand_in_for}]" if trial.model.stand_in_for else ""
        lines.append(
            f"  {trial.name:<22} {trial.model.checkpoint}  lr={trial.optimizer.lr:g} "
            f"schedule={trial.schedule.name}/{trial.schedule.warmup_steps}{stand_in}"
        )
    lines.append(HEAD_NOTE)
    return "\n".join(lines)


# Said once here, instead of transformers' "classifier.weight MISSING" report in every trial
# (trainables/quiet_logs.py drops that report when the head is all it lists).
HEAD_NOTE = (
    "  Each model gets a one-output classification head; unless its checkpoint already has one, the head "
    "starts at random (epoch 0 is that untrained model) and fine-tuning trains it with the encoder."
)


def report(outcome) -> str:
    from study import results

    table = results.format_table(results.summary_rows(outcome.trials, outcome.columns))
    lines = ["", "Results (per model x optimizer x epoch):", results.column_sources(outcome.columns), table]
    lines += results.stand_in_notes(outcome.trials)
    stored_at = f" (read back from {outcome.location}, which also holds the checkpoints)" if outcome.location else ""
    lines += ["", f"Study directory: {outcome.study_dir}{stored_at}"]
    lines += [f"  {kind}: {path}" for kind, path in outcome.paths.items()]
    lines.append(f"  run files: {outcome.study_dir}/<trial>/runs/<set>.epoch<N>.trec")
    from study.export import best_checkpoint_lines

    lines += ["", *best_checkpoint_lines(outcome.study_dir)]
    return "\n".join(lines)


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated integers such as 12,13,14, but got {text!r}") from None


def _split(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for value in values for v in value.split(",") if v]


if __name__ == "__main__":
    sys.exit(main())
