"""`python -m study.run --compare adamw lion adafactor --budget 20 --confirm-seeds 3`: tuned against tuned.

An optimizer comparison holds up only when every optimizer gets the same tuning budget and its best
configuration is re-run over fresh seeds (AlgoPerf; Dodge et al. 2019; Kaddour et al. 2023, "No
Train No Gain"). The comparison runs in two phases, each an existing part of the project:

1. search: one Optuna search per model x optimizer (study/search/), all with the same number of
   trials, the same TPE seed (so the random start is paired), the same ASHA rule, and selection on
   the validation set; each starts from the optimizer's default (the thesis's for AdamW and Lion);
2. confirm: each optimizer's default and selected ("tuned") configurations, re-trained with every
   confirmation seed (fresh: the search trains with the thesis's seed 12) and evaluated on the test
   sets after every epoch, as a grid study (study/orchestrate.py).

The report (study/reporting/compare.py) sets tuned against tuned and each beside its default.
Directory: <storage>/<name>/{compare_spec.json, search/, confirm/, compare_report.md}.

An interrupted comparison continues as a whole with `python -m study.run --resume <dir>`: the
search's unfinished pairs continue (a search that finished is not run again), then the
confirmation grid starts or continues, then the report is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from search_spaces import thesis
from study.cli_errors import print_bad_input

SEARCH_TRAINING_SEED: int = thesis.TRAINING["seed"]  # the search's trials train with the thesis's seed
DEFAULT_BUDGET = 20
DEFAULT_CONFIRM_SEEDS = 3

if TYPE_CHECKING:
    from study.search.compare_spec import CompareSpec


def parse_confirm_seeds(text: str | None) -> tuple[int, ...]:
    """`3` -> three fresh seeds after the search's (13, 14, 15); `21,22` -> those seeds."""
    text = (text or str(DEFAULT_CONFIRM_SEEDS)).strip()
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--confirm-seeds expects a count N or seeds S,S,..., but got {text!r}") from None
    if "," not in text:
        if values[0] < 1:
            raise ValueError(f"--confirm-seeds expects at least 1 seed, but got {values[0]}")
        values = [SEARCH_TRAINING_SEED + 1 + i for i in range(values[0])]
    from study.search.compare_spec import check_distinct
    from study.spec import SEED_MAX

    out_of_range = [s for s in values if not 0 <= s <= SEED_MAX]
    if out_of_range:
        raise ValueError(f"--confirm-seeds must lie in [0, {SEED_MAX}], but got {out_of_range}")
    return check_distinct(values)


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "optimizer comparison (--compare O O ...)",
        "every optimizer gets the same search budget (the search's options apply: --seed, --scheduler, "
        "--metric, --range ...), then its default and tuned configurations are re-run over fresh seeds",
    )
    group.add_argument("--budget", type=int, help=f"search trials per model x optimizer (default {DEFAULT_BUDGET})")
    group.add_argument(
        "--confirm-seeds",
        metavar="N|S,S,...",
        help=f"seeds the default and tuned configurations are re-run with (default {DEFAULT_CONFIRM_SEEDS}: "
        f"{SEARCH_TRAINING_SEED + 1}..{SEARCH_TRAINING_SEED + DEFAULT_CONFIRM_SEEDS})",
    )


def resolve_compare(args: argparse.Namespace) -> CompareSpec:
    """The validated comparison; ValueError on bad input (nothing is run)."""
    from study.names import check_at_least, check_name
    from study.search import cli as search_cli
    from study.search.spec import build_search
    from study.spec import OPTIMIZERS

    optimizers = list(dict.fromkeys(search_cli._split(args.compare) or []))
    for optimizer in optimizers:
        check_name(optimizer, OPTIMIZERS, what="optimizer")
    if len(optimizers) < 2:
        raise ValueError(f"--compare expects at least two optimizers to compare, but got {optimizers}")
    if args.optimizers or args.num_samples is not None:
        raise ValueError("--compare names the optimizers and --budget the trials; drop --optimizers and --num-samples")
    if args.resume:
        raise ValueError(
            "--compare starts a comparison; continue an interrupted one with its directory alone: "
            "python -m study.run --resume DIR"
        )
    if args.seeds:
        raise ValueError("--compare takes no --seeds (the confirmation seeds are --confirm-seeds)")
    budget = args.budget if args.budget is not None else DEFAULT_BUDGET
    check_at_least("--budget", budget, 1)
    check_at_least("--max-concurrent", args.max_concurrent, 1)
    check_at_least("--epochs", args.epochs, 1)
    seeds = parse_confirm_seeds(args.confirm_seeds)
    if SEARCH_TRAINING_SEED in seeds:
        raise ValueError(
            f"--confirm-seeds must be fresh, but {SEARCH_TRAINING_SEED} is the seed the search trains with"
        )
    from study import grids
    from study.search.compare_spec import SEARCH_NAME, CompareSpec

    scale = args.scale or "full"
    name = args.name or grids.default_study_name("compare", scale)
    storage = args.storage or "studies"
    directory = Path(storage).expanduser().resolve() / name
    search = build_search(
        **search_cli.search_options(args),
        optimizers=optimizers,
        num_samples=budget,
        name=SEARCH_NAME,
        storage=str(directory),
    )
    return CompareSpec(
        name=name,
        storage=storage,
        optimizers=tuple(optimizers),
        search=search.model_dump(mode="json"),
        confirm_seeds=seeds,
    )


def confirmation_study(spec: CompareSpec, selected: dict[str, dict]):
    """The grid study re-running each pair's default and tuned configurations with every seed.
    `selected`: pair name -> the selected configuration's params (study/search/run.py's finalize);
    a pair whose selection is its default runs once, tagged `default`."""
    from search_spaces import optuna_spaces as spaces
    from study import grids
    from study.search.compare_spec import CONFIRM_NAME
    from study.spec import StudySpec

    search = spec.search_spec()
    grid = grids.build_study("thesis", scale=search.scale, optimizers=spec.optimizers)
    models = sorted({p.trial.model.name for p in search.pairs})
    epochs = search.pairs[0].trial.training.epochs
    base = grids.restrict(grid, models=models, optimizers=spec.optimizers, epochs=epochs)
    trials = []
    for trial in base.trials:
        default = trial.model_dump(mode="json")
        pair = next(p for p in search.pairs if p.name == trial.name)
        default["training"]["data"] = pair.trial.training.data.model_dump(mode="json")  # as searched
        trials.append(default | {"tag": "default"})
        params = selected.get(trial.name)
        if params is not None and params != pair.thesis_point:
            trials.append(spaces.apply_params(default, params) | {"tag": "tuned"})
    study = StudySpec.model_validate(
        base.model_dump(mode="json")
        | {"name": CONFIRM_NAME, "storage": str(spec.directory), "trials": trials, "max_concurrent": search.max_concurrent}
    )
    return grids.with_seeds(study, spec.confirm_seeds)


def unfinished_trials(confirm, results) -> list[str]:
    """The confirmation's trials that have no result of their own yet: never started, stopped, or failed
    for a reason a retry can fix (a lost node, a killed worker). A trial that diverged is a result (its
    optimizer's), and a retry would diverge again (trainables/reranker.py), so it counts as done."""
    from trainables.reranker import DIVERGED_MARKER

    by_name = {r.name: r for r in results}
    unfinished = []
    for trial in confirm.trials:
        result = by_name.get(trial.name)
        if result is None or result.status == "incomplete":
            unfinished.append(trial.name)
        elif result.status == "failed" and not (Path(result.trial_dir) / DIVERGED_MARKER).exists():
            unfinished.append(trial.name)
    return unfinished


class CompareInterrupted(Exception):
    """Ctrl+C stopped the comparison; what finished is kept and `--resume DIR` continues it."""


# options a resumed comparison cannot take (argparse dest -> flag): it continues as it was started
_FIXED_ON_RESUME = {
    "models": "--models", "optimizers": "--optimizers", "epochs": "--epochs", "scale": "--scale",
    "name": "--name", "storage": "--storage", "seeds": "--seeds", "budget": "--budget",
    "confirm_seeds": "--confirm-seeds", "num_samples": "--num-samples", "scheduler": "--scheduler",
    "rungs": "--rungs", "validate_every_steps": "--validate-every-steps", "metric": "--metric",
    "seed": "--seed", "range": "--range", "optuna_storage": "--optuna-storage",
    "max_failures": "--max-failures", "node_env": "--node-env",
}  # fmt: skip


def is_comparison(directory: str) -> bool:
    from study.search.compare_spec import COMPARE_SPEC

    return (Path(directory).expanduser() / COMPARE_SPEC).is_file()


def resumed_compare(args: argparse.Namespace) -> CompareSpec:
    """The saved comparison in `args.resume`, pointed at where its directory is now; ValueError on
    options that would change it (`--max-concurrent` may change: how many trials run at once)."""
    from study.names import check_at_least
    from study.search import compare_spec
    from study.search.spec import default_optuna_storage

    given = [flag for dest, flag in _FIXED_ON_RESUME.items() if getattr(args, dest, None) not in (None, False)]
    if given:
        raise ValueError(
            f"--resume continues the comparison as it was started, so it takes no {', '.join(given)} "
            "(only --address and --max-concurrent)"
        )
    check_at_least("--max-concurrent", args.max_concurrent, 1)
    saved = compare_spec.load(args.resume)
    directory = Path(args.resume).expanduser().resolve()
    search = dict(saved.search)
    if search["optuna_storage"] == default_optuna_storage(search["storage"], search["name"]):  # moved along
        search["optuna_storage"] = default_optuna_storage(str(directory), search["name"])
    search["storage"] = str(directory)
    if args.max_concurrent is not None:
        search["max_concurrent"] = args.max_concurrent
    return compare_spec.CompareSpec.model_validate(
        saved.model_dump() | {"name": directory.name, "storage": str(directory.parent), "search": search}
    )


def main(args: argparse.Namespace) -> int:
    """`--compare O O ...` starts a comparison; `--resume DIR` (a comparison's directory) continues one."""
    resume = isinstance(args.resume, str) and args.compare is None
    try:
        spec = resumed_compare(args) if resume else resolve_compare(args)
        search = spec.search_spec()
        if args.print_spec:
            import yaml

            print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), end="")
            return 0
        if not resume and spec.spec_file.exists():
            raise ValueError(
                f"comparison {spec.name} already exists in {spec.directory}; pick another --name, or continue "
                f"it with: python -m study.run --resume {spec.directory}"
            )
        from study.search import cli as search_cli
        from study.search.spec import SPEC_FILE, study_dir

        if not (resume and search_finished(spec)):
            search_cli.preflight(search, resume=resume and (study_dir(search) / SPEC_FILE).exists())
    except Exception as err:  # noqa: BLE001 -- every bad input becomes one paragraph and exit 2
        return print_bad_input(err)

    from study.search import cli as search_cli

    print(
        f"{'Resuming comparison' if resume else 'Comparison'} {spec.name}: {', '.join(spec.optimizers)}; "
        f"{search.num_samples} search trials per model x optimizer, then default and tuned re-run with seeds "
        f"{', '.join(map(str, spec.confirm_seeds))}",
        flush=True,
    )
    print(search_cli.describe(search, resume=resume), flush=True)
    try:
        outcome = run_compare(spec, address=args.address, resume=resume)
    except CompareInterrupted as stopped:
        print(f"\n{stopped}; what finished is kept. Continue it with:\n  python -m study.run --resume {spec.directory}")
        return search_cli.EXIT_INTERRUPTED
    print(outcome)
    return 0


def search_finished(spec: CompareSpec) -> bool:
    """The search phase ended: its best configurations were selected and evaluated (written last)."""
    from study.search.report import BEST_JSON
    from study.search.spec import study_dir

    return (study_dir(spec.search_spec()) / BEST_JSON).is_file()


def run_compare(spec: CompareSpec, *, address: str | None = None, resume: bool = False) -> str:
    """Search, confirm, report; returns the report's summary for the terminal. With `resume`, the
    phases that finished are skipped and an interrupted one continues; CompareInterrupted on Ctrl+C."""
    import json

    from ray import tune

    from study.cluster.storage import load_study_spec
    from study.orchestrate import run_study
    from study.reporting.compare import write_compare_report
    from study.search.compare_spec import CONFIRM_NAME
    from study.search.report import BEST_JSON
    from study.search.run import run_search
    from study.search.spec import study_dir

    spec.directory.mkdir(parents=True, exist_ok=True)
    if not resume:
        spec.spec_file.write_text(spec.model_dump_json(indent=2))
    search = spec.search_spec()
    if resume and search_finished(spec):
        print(f"Search {search.name}: finished before, not run again", flush=True)
        pairs = json.loads((study_dir(search) / BEST_JSON).read_text())["pairs"]
    else:
        outcome = run_search(search, address=address)
        if not outcome.complete:
            raise CompareInterrupted(f"The comparison's search stopped before its budget was spent ({outcome.study_dir})")
        pairs = outcome.pairs
    selected = {entry["pair"]: entry["selected"]["params"] for entry in pairs if "selected" in entry}
    confirm_dir = spec.directory / CONFIRM_NAME
    if resume and tune.Tuner.can_restore(confirm_dir):
        confirm = load_study_spec(str(confirm_dir))  # as it was started
        print(f"Confirmation {confirm.name}: continuing its {len(confirm.trials)} trials", flush=True)
        done = run_study(confirm, address=address, resume=True)
    else:
        confirm = confirmation_study(spec, selected)
        print(f"Confirmation {confirm.name}: {len(confirm.trials)} trials", flush=True)
        done = run_study(confirm, address=address)
    unfinished = unfinished_trials(confirm, done.trials)
    if unfinished:
        raise CompareInterrupted(
            f"The comparison's confirmation stopped before {len(unfinished)} of its {len(confirm.trials)} trials "
            f"finished ({', '.join(unfinished)}; {done.study_dir})"
        )
    report = write_compare_report(spec.directory)
    return report.summary + f"\n  report: {report.markdown}"
