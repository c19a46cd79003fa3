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
    if args.resume or args.seeds:
        raise ValueError("--compare takes no --resume or --seeds (the confirmation seeds are --confirm-seeds)")
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


def main(args: argparse.Namespace) -> int:
    try:
        spec = resolve_compare(args)
        search = spec.search_spec()
        if args.print_spec:
            import yaml

            print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), end="")
            return 0
        if spec.spec_file.exists():
            raise ValueError(f"comparison {spec.name} already exists in {spec.directory}; pick another --name")
        from study.search import cli as search_cli

        search_cli.preflight(search, resume=False)
    except Exception as err:  # noqa: BLE001 -- every bad input becomes one paragraph and exit 2
        return print_bad_input(err)

    from study.search import cli as search_cli

    print(
        f"Comparison {spec.name}: {', '.join(spec.optimizers)}; {search.num_samples} search trials per model x "
        f"optimizer, then default and tuned re-run with seeds {', '.join(map(str, spec.confirm_seeds))}",
        flush=True,
    )
    print(search_cli.describe(search, resume=False), flush=True)
    outcome = run_compare(spec, address=args.address)
    print(outcome)
    return 0


def run_compare(spec: CompareSpec, *, address: str | None = None) -> str:
    """Search, confirm, report; returns the report's summary for the terminal."""
    from study.orchestrate import run_study
    from study.reporting.compare import write_compare_report
    from study.search.run import run_search

    spec.directory.mkdir(parents=True, exist_ok=True)
    spec.spec_file.write_text(spec.model_dump_json(indent=2))
    search = spec.search_spec()
    outcome = run_search(search, address=address)
    if not outcome.complete:
        raise RuntimeError(f"the comparison's search stopped before its budget was spent ({outcome.study_dir})")
    selected = {entry["pair"]: entry["selected"]["params"] for entry in outcome.pairs if "selected" in entry}
    confirm = confirmation_study(spec, selected)
    print(f"Confirmation {confirm.name}: {len(confirm.trials)} trials", flush=True)
    run_study(confirm, address=address)
    report = write_compare_report(spec.directory)
    return report.summary + f"\n  report: {report.markdown}"
