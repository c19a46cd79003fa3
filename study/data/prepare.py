"""Prepare a study's data and models once, on the CPU, before any trial holds a GPU.

    python -m study.data.prepare --grid thesis [the other study.run options]

For every distinct piece a study's trials use: the training pairs, sampled and tokenized per
tokenizer (MS MARCO's downloads and ir_datasets' docstore on first use), the evaluation sets, each model's files (and remote code,
executed once here rather than by several trials at once racing on Hugging Face's module cache),
and the tokenized candidates of every evaluation set per tokenizer (STUDY_CACHE_DIR). The work
runs under one exclusive file lock per cache directory (study/data/lock.py), so two processes
preparing at once build each cache once: the second waits, then finds everything built. A marker
per trial's data says it is prepared; trials then read it without the lock, and otherwise take it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from study.data.cache import cache_dir
from study.data.lock import data_lock, marker, preparation_key

if TYPE_CHECKING:
    from study.spec import TrialSpec


def prepare_trials(trials: Sequence[TrialSpec]) -> dict[str, int]:
    """Build everything `trials` read; returns counts of what was done (for the log and the tests)."""
    from trainables.models import load_cross_encoder, model_input_names
    from trainables.trial import evaluation_candidates, training_tokens

    counts = {"trials": 0, "already_prepared": 0, "new_cache_files": 0}
    with data_lock() as waited:
        counts["waited_s"] = round(waited, 2)
        before = _cache_files()
        done: set[str] = set()
        for trial in trials:
            key = preparation_key(trial)
            if key in done or marker(trial).exists():
                counts["already_prepared"] += 1
                continue
            tokenizer, model = load_cross_encoder(trial.model)  # files, and remote code run once
            with_types = "token_type_ids" in model_input_names(model)
            del model
            training_tokens(trial, tokenizer, with_types=with_types)
            evaluation_candidates(trial, tokenizer, with_types=with_types)
            marker(trial).parent.mkdir(parents=True, exist_ok=True)
            marker(trial).write_text(trial.model_dump_json())
            done.add(key)
            counts["trials"] += 1
        counts["new_cache_files"] = len(_cache_files() - before)
    return counts


def _cache_files() -> set[Path]:
    return {path for room in ("tokenized", "training") for path in (cache_dir() / room).glob("*.npz")}


def study_trials(argv: Sequence[str]) -> list[TrialSpec]:
    """The trials a `python -m study.run` command line runs (a search: each model x optimizer's
    trial with its validation set, plus the test sets its selected settings are reported on)."""
    from study.run import build_parser, resolve_spec

    args = build_parser().parse_args(list(argv))
    if args.search:
        from study.search.cli import resolve_search

        search = resolve_search(args)
        trials = [p.trial for p in search.pairs]
        tested = [t.model_copy(update={"evaluation": tuple(search.test_sets)}) for t in trials]
        return trials + tested
    if isinstance(args.resume, str):
        from study.cluster.storage import load_study_spec

        return list(load_study_spec(args.resume).trials)
    return list(resolve_spec(args).trials)


def main(argv: Sequence[str] | None = None) -> int:
    from study.cli_errors import print_bad_input

    try:
        trials = study_trials(sys.argv[1:] if argv is None else argv)
    except Exception as err:  # noqa: BLE001 -- bad input: one paragraph, exit 2
        return print_bad_input(err)
    counts = prepare_trials(trials)
    print(f"prepared: {json.dumps(counts)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
