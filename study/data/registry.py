"""Resolve the data a spec names: evaluation sets and training pairs.

Evaluation sets:
- `builtin-<size>-<split>` (dl | dev | validation): generated offline by study/data/builtin.py;
- the thesis's named sets (study/data/msmarco.py): from their official files when `files:` is given,
  else downloaded through ir_datasets / Hugging Face;
- any other name with `files:`: a collection of the user's own (study/data/local.py).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from collections.abc import Iterable

from study.data import msmarco
from study.data.formats import FormatError, check_file
from study.data.local import collection_eval_set, collection_training_pairs
from study.data.subsets import fixed_subset
from study.data.types import EvalSet, TrainingPair
from study.names import check_name
from study.spec import CollectionSpec, EvalSetSpec, TrainDataSpec

LARGE_FILE_BYTES = 256 * 2**20
BUILTIN_SPLITS: dict[str, str] = {"dl": "builtin-dl", "dev": "builtin-dev", "validation": "builtin-validation"}


def builtin_sizes() -> tuple[str, ...]:
    from study.data.builtin import SIZES

    return tuple(SIZES)


def builtin_names() -> tuple[str, ...]:
    return tuple(f"builtin-{size}-{split}" for size in builtin_sizes() for split in BUILTIN_SPLITS)


def named_sets() -> tuple[str, ...]:
    return (*builtin_names(), *msmarco.NAMED_SETS)


def protocol(spec: EvalSetSpec) -> str:
    """One line saying what an evaluation set measures."""
    if spec.name in msmarco.NAMED_SETS:
        text = msmarco.NAMED_SETS[spec.name][0]
    elif spec.name.startswith("builtin-"):
        text = "built-in generated collection (offline; not comparable to MS MARCO numbers)"
    else:
        text = f"local collection ({spec.files.qrels if spec.files else '?'})"
    extras = [f"top {spec.depth} reranked" if spec.depth else "", f"{spec.max_queries} queries" if spec.max_queries else ""]
    return text + "".join(f"; {e}" for e in extras if e)


def check_eval_set(spec: EvalSetSpec) -> None:
    """ValueError for a name that is neither known nor backed by files."""
    if spec.files is None:
        check_name(spec.name, named_sets(), what="evaluation set (or give `files:` for your own collection)")


def load_eval_set(spec: EvalSetSpec) -> EvalSet:
    check_eval_set(spec)
    if spec.name.startswith("builtin-") and spec.files is None:
        size, split = spec.name.removeprefix("builtin-").rsplit("-", 1)
        eval_set = dataclasses.replace(_builtin(size).eval_sets[BUILTIN_SPLITS[split]], name=spec.name)
    elif spec.files is not None:
        named = msmarco.NAMED_SETS.get(spec.name)
        eval_set = collection_eval_set(spec.name, spec.files, description=named[0] if named else "")
        if named:  # a named set's files are read under its protocol (DL: binary measures count rel >= 2)
            eval_set = dataclasses.replace(eval_set, binary_rel_threshold=named[1])
    else:
        eval_set = msmarco.download_eval_set(spec.name)
    return _subset(eval_set, spec.max_queries)


def load_training_pairs(spec: TrainDataSpec, *, seed: int) -> list[TrainingPair]:
    """Training pairs, capped at `max_pairs` by a seeded, deterministic sample."""
    if spec.source == "builtin":
        check_name(spec.size, builtin_sizes(), what="builtin size")
        pairs = list(_builtin(spec.size).train_pairs)
        if spec.max_pairs is not None and spec.max_pairs < len(pairs):
            import random

            keep = sorted(random.Random(seed).sample(range(len(pairs)), spec.max_pairs))
            pairs = [pairs[i] for i in keep]
        return pairs
    if spec.source == "collection":
        pairs = collection_training_pairs(spec.collection)
        return pairs if spec.max_pairs is None else msmarco.reservoir_sample(pairs, spec.max_pairs, seed=seed)
    if spec.file is not None:  # triples, or MS MARCO's official triples.train.small.tsv
        from study.data.formats import iter_triples

        return msmarco.sample_pairs(iter_triples(spec.file), max_pairs=spec.max_pairs, seed=seed)
    return msmarco.download_training_pairs(max_pairs=spec.max_pairs, seed=seed)


def check_available(evaluation: list[EvalSetSpec], training: TrainDataSpec) -> None:
    """Before Ray starts: names known, and the packages that downloads need are installed."""
    needs: set[str] = set()
    for spec in evaluation:
        check_eval_set(spec)
        if spec.files is None and spec.name in msmarco.NAMED_SETS:
            needs.add("datasets" if spec.name in msmarco.V11_SETS else "ir_datasets")
    if training.source == msmarco.TRAIN_SOURCE and training.file is None:
        needs.add("ir_datasets")
    missing = sorted(m for m in needs if importlib.util.find_spec(m) is None)
    if missing:
        raise RuntimeError(
            f"the full-scale data is downloaded with {' and '.join(missing)}, which is not installed: "
            'pip install -e ".[data]" on a machine with internet (caches: IR_DATASETS_HOME, HF_HOME), or give '
            "the official files in the spec (`files:` per evaluation set, `file:` for the training triples). "
            "Offline, `--scale smoke` and `--scale demo` need no downloads."
        )


def check_files(evaluation: Iterable[EvalSetSpec], training: Iterable[TrainDataSpec]) -> None:
    """Before Ray starts: read every local data file once (not once per trial), in full, keeping nothing.

    A FormatError names the spec field, the file and the line; without this check a bad line showed up
    as one Ray traceback per trial.
    """
    files: dict[tuple[str, str], str] = {}
    for spec in evaluation:
        if spec.files is not None:
            files |= {key: f"evaluation set {spec.name!r}" for key in _collection_files(spec.files) if key not in files}
    for data in training:
        if data.file is not None:
            files.setdefault(("triples", data.file), "training data (`file`)")
        if data.collection is not None:
            files |= {k: "training collection" for k in _collection_files(data.collection) if k not in files}
    for (kind, path), owner in files.items():
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        if size > LARGE_FILE_BYTES:  # MS MARCO's corpus and triples take minutes: say why nothing moves
            print(f"checking {path} ({size / 2**30:.1f} GiB) before Ray starts ...", flush=True)
        try:
            check_file(path, kind)
        except FormatError as err:
            raise FormatError(f"{owner}, {kind} file: {err}") from None


def _collection_files(spec: CollectionSpec) -> list[tuple[str, str]]:
    kinds = ("queries", "qrels", "corpus", "candidates")
    return [(kind, getattr(spec, kind)) for kind in kinds if getattr(spec, kind) is not None]


def _subset(eval_set: EvalSet, max_queries: int | None) -> EvalSet:
    if max_queries is None:
        return eval_set
    keep = fixed_subset(eval_set.qrels, max_queries)
    return dataclasses.replace(
        eval_set,
        queries={q: t for q, t in eval_set.queries.items() if q in keep},
        candidates={q: d for q, d in eval_set.candidates.items() if q in keep},
        qrels={q: j for q, j in eval_set.qrels.items() if q in keep},
    )


@functools.lru_cache(maxsize=2)
def _builtin(size: str):
    from study.data.builtin import build_builtin_dataset

    return build_builtin_dataset(size)
