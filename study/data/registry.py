"""Named datasets: evaluation sets and training-pair sources, looked up by the names specs use.

Built-in names (`builtin-<size>-<split>`) are generated offline by study/data/builtin.py. The
thesis's real data (MS MARCO training triples, TREC DL 2019, MS MARCO dev) is declared here by
name so specs can say what they need; its loaders need downloads that this build does not yet do.
"""

from __future__ import annotations

import dataclasses
import functools

from study.data.types import EvalSet, TrainingPair
from study.names import check_name

BUILTIN_SPLITS: dict[str, str] = {"dl": "builtin-dl", "dev": "builtin-dev", "validation": "builtin-validation"}

# Real collections a full-scale study needs, with what obtaining them takes.
EXTERNAL: dict[str, str] = {
    "msmarco-passage-train": "MS MARCO passage training triples (ir_datasets msmarco-passage/train/triples-small)",
    "trec-dl-2019": "TREC DL 2019 passage: 43 judged queries, NIST qrels, official BM25 top-1000",
    "msmarco-v1.1-qna-dev": "MS MARCO v1.1 QnA validation split (Hugging Face microsoft/ms_marco, v1.1)",
    "msmarco-dev-small-top1000": "MS MARCO passage dev/small, reranking the official BM25 top-1000",
    "msmarco-dev-validation": "a fixed slice of MS MARCO passage dev queries outside dev/small, for "
    "hyperparameter selection (--search)",
}


def builtin_sizes() -> tuple[str, ...]:
    from study.data.builtin import SIZES

    return tuple(SIZES)


def eval_set_names() -> tuple[str, ...]:
    builtin = [f"builtin-{size}-{split}" for size in builtin_sizes() for split in BUILTIN_SPLITS]
    return (*builtin, *EXTERNAL)


def check_eval_set_name(name: str) -> None:
    """ValueError for an unknown evaluation set, with the closest known name."""
    check_name(name, eval_set_names(), what="evaluation set")


def load_eval_set(name: str) -> EvalSet:
    check_eval_set_name(name)
    if name in EXTERNAL:
        raise _not_available(name)
    size, split = name.removeprefix("builtin-").rsplit("-", 1)
    eval_set = _builtin(size).eval_sets[BUILTIN_SPLITS[split]]
    return dataclasses.replace(eval_set, name=name)


def load_training_pairs(source: str, *, size: str, max_pairs: int | None, seed: int) -> list[TrainingPair]:
    """Training pairs from `source`, capped at `max_pairs` (a seeded, deterministic subset)."""
    if source in EXTERNAL:
        raise _not_available(source)
    if source != "builtin":
        check_name(source, ("builtin", *EXTERNAL), what="training source")
    check_name(size, builtin_sizes(), what="builtin size")
    pairs = _builtin(size).train_pairs
    if max_pairs is not None and max_pairs < len(pairs):
        import random

        keep = sorted(random.Random(seed).sample(range(len(pairs)), max_pairs))
        pairs = [pairs[i] for i in keep]
    return list(pairs)


def check_available(names: list[str]) -> None:
    """RuntimeError naming every dataset in `names` that cannot be loaded on this build."""
    missing = [n for n in names if n in EXTERNAL]
    if missing:
        raise _not_available(*missing)


@functools.lru_cache(maxsize=2)
def _builtin(size: str):
    from study.data.builtin import build_builtin_dataset

    return build_builtin_dataset(size)


def _not_available(*names: str) -> RuntimeError:
    needs = "; ".join(f"{n}: {EXTERNAL[n]}" for n in names)
    return RuntimeError(
        f"the full-scale data is not available: {needs}. Its loaders (downloads through ir_datasets "
        "and Hugging Face, which need internet and a shared cache) are not part of this build yet. "
        "Run `--scale demo` or `--scale smoke`, which generate their data offline."
    )
