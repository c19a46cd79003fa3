"""The thesis's real data: MS MARCO training triples, TREC DL 2019 and the two MS MARCO dev protocols.

Each named set loads from its official files when the spec gives them (`files:`), and otherwise
downloads through ir_datasets or Hugging Face `datasets` (optional extra `data`) into their caches
(IR_DATASETS_HOME, HF_HOME), which cluster nodes can share.

The two MS MARCO dev protocols are different measurements:
- `msmarco-v1.1-qna-dev`: each query's ~10 passages shown to the QnA annotators, `is_selected`
  marking the relevant ones. The thesis's MRR@10 (about 0.59) comes from a protocol like this one:
  even a random order of 10 candidates with one positive scores about 0.29. Queries with no
  selected passage cannot be answered by any ranking and are left out (counted in a warning).
- `msmarco-dev-small-top1000`: dev/small's 6,980 queries reranking the official BM25 top-1000, the
  literature's protocol (BM25 alone 0.187 MRR@10; good cross-encoders about 0.39).

Two validation sets for the full-scale search (--search), disjoint from both test sets (DL19 and
v1.1 dev) and cheap enough to evaluate every few thousand steps:
- `trec-dl-2020`: TREC DL 2020 passage, the 54 judged queries with NIST graded qrels, reranking the
  official BM25 top-1000 (about 54k pairs). The literature selects on it; its queries come from
  MS MARCO's held-out eval queries, so none is a training query. The nDCG@10 role (the default).
- `msmarco-v1.1-qna-train-slice`: a fixed slice of 1,000 MS MARCO v1.1 QnA *train* queries (those
  with a selected passage, chosen by a hash of the query id), in the thesis's dev protocol (~10
  shown passages each, about 10k pairs). The RR@10 (MRR@10) role. Its queries are not in v1.1
  dev; MS MARCO passage train draws on the same pool of Bing queries, so some may also be
  training queries (not checked here: no offline copy of the training queries).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from study.data.subsets import fixed_subset
from study.data.types import EvalSet, TrainingPair
from study.tracking.loop_progress import progress

log = logging.getLogger(__name__)

# NIST's qrels for TREC DL 2019 passage (9,260 judgments of the 43 queries), shipped with the package.
DL19_QRELS = Path(__file__).with_name("official") / "qrels.dl19-passage.txt"

# name -> (protocol, the grade the set's own convention counts as relevant). Binary measures are always
# computed at rel >= 1 (trec_eval's default, the thesis's: plain names such as `P@10`) and, where
# this grade is higher, also at it (`P(rel=2)@10`); see eval/measures.py.
NAMED_SETS: dict[str, tuple[str, int]] = {
    "trec-dl-2019": (
        "TREC DL 2019 passage: the 43 judged queries, NIST graded qrels (0-3; binary measures at rel >= 1 as the "
        "thesis's trec_eval counted, and at rel >= 2 as the track does, named e.g. P(rel=2)@10), "
        "reranking the official BM25 top-1000",
        2,
    ),
    "msmarco-v1.1-qna-dev": (
        "MS MARCO v1.1 QnA validation: ~10 annotator-shown passages per query, is_selected = relevant; "
        "the thesis's MRR@10 protocol, not comparable to the literature's dev/small top-1000 numbers",
        1,
    ),
    "msmarco-dev-small-top1000": (
        "MS MARCO passage dev/small: 6,980 queries reranking the official BM25 top-1000 (the literature's protocol)",
        1,
    ),
    "trec-dl-2020": (
        ("TREC DL 2020 passage: the 54 judged queries, NIST graded qrels (0-3; binary measures count rel >= 2), "
        "reranking the official BM25 top-1000; a validation set disjoint from DL19, dev and training queries"),
        2,
    ),
    "msmarco-v1.1-qna-train-slice": (
        ("MS MARCO v1.1 QnA train, a fixed slice of 1,000 queries with a selected passage: the thesis's "
        "dev protocol (~10 annotator-shown passages per query) on queries that are not in v1.1 dev"),
        1,
    ),
}
# The v1.1 QnA sets: Hugging Face `microsoft/ms_marco` v1.1 split, and how many queries are kept.
V11_SETS: dict[str, tuple[str, int | None]] = {
    "msmarco-v1.1-qna-dev": ("validation", None),
    "msmarco-v1.1-qna-train-slice": ("train", 1000),
}
TRAIN_SOURCE = "msmarco-passage-train"
_IR_DATASETS_IDS = {
    "trec-dl-2019": "msmarco-passage/trec-dl-2019/judged",
    "trec-dl-2020": "msmarco-passage/trec-dl-2020/judged",
    "msmarco-dev-small-top1000": "msmarco-passage/dev/small",
    TRAIN_SOURCE: "msmarco-passage/train/triples-small",
}


def reservoir_sample(items: Iterable, k: int | None, *, seed: int) -> list:
    """A uniform sample of `k` items (all when k is None) in one streaming pass; same seed, same sample."""
    rng = random.Random(seed)
    sample: list = []
    total = len(items) if hasattr(items, "__len__") else None
    for i, item in enumerate(progress(items, desc="sampling training pairs", total=total, unit="items")):
        if k is None or i < k:
            sample.append(item)
        else:
            j = rng.randint(0, i)
            if j < k:
                sample[j] = item
    return sample


def sample_pairs(triples: Iterable[tuple[str, str, str]], *, max_pairs: int | None, seed: int) -> list[TrainingPair]:
    """(q, pos, 1) and (q, neg, 0) from a uniform sample of max_pairs / 2 (query, pos, neg) triples."""
    k = None if max_pairs is None else max(1, max_pairs // 2)
    pairs = []
    for query, positive, negative in reservoir_sample(triples, k, seed=seed):
        pairs.append(TrainingPair(query, positive, 1.0))
        pairs.append(TrainingPair(query, negative, 0.0))
    return pairs


def triples_from_ir_datasets(docpairs: Iterable, queries: dict[str, str], passage_text) -> Iterator[tuple[str, str, str]]:
    """ir_datasets docpairs (query_id, doc_id_a, doc_id_b) as text triples; `passage_text(id)` looks up a passage."""
    for pair in docpairs:
        yield queries[pair.query_id], passage_text(pair.doc_id_a), passage_text(pair.doc_id_b)


def v11_rows_to_eval_set(rows: Iterable[dict], *, name: str = "msmarco-v1.1-qna-dev") -> EvalSet:
    """The Hugging Face `microsoft/ms_marco` v1.1 rows as an evaluation set (docids `<qid>-<i>`)."""
    queries, passages, candidates, qrels = {}, {}, {}, {}
    skipped = 0
    for row in rows:
        qid = str(row["query_id"])
        shown = row["passages"]
        docids = [f"{qid}-{i}" for i in range(len(shown["passage_text"]))]
        selected = {d: int(s) for d, s in zip(docids, shown["is_selected"])}
        if not any(selected.values()):
            skipped += 1
            continue
        queries[qid] = row["query"]
        passages.update(zip(docids, shown["passage_text"]))
        candidates[qid] = docids  # in the order shown to annotators
        qrels[qid] = selected
    if skipped:
        log.warning("%s: %d queries have no selected passage and are left out of evaluation", name, skipped)
    return EvalSet(name, queries, passages, candidates, qrels, binary_rel_threshold=1, description=NAMED_SETS[name][0])


def rel_threshold(name: str, given: int | None) -> int:
    """The set's relevance grade: the one given in `files:`, else the named set's, else 1.

    One rule for both ways of loading a set, so TREC DL 2019 scores the same from files as downloaded.
    """
    if given is not None:
        return given
    return NAMED_SETS[name][1] if name in NAMED_SETS else 1


def v11_slice(rows, n: int | None) -> Iterator[dict]:
    """The rows of a fixed set of `n` queries that have a selected passage (all when n is None);
    the same queries whatever order the rows come in. `rows` is read twice (a list or a HF dataset)."""
    if n is None:
        yield from rows
        return
    answerable = (str(row["query_id"]) for row in rows if any(row["passages"]["is_selected"]))
    keep = fixed_subset(answerable, n)
    yield from (row for row in rows if str(row["query_id"]) in keep)


def download_eval_set(name: str) -> EvalSet:
    """A named set through ir_datasets or Hugging Face datasets (needs internet or a filled cache)."""
    if name in V11_SETS:
        split, queries = V11_SETS[name]
        datasets = _optional("datasets")
        rows = datasets.load_dataset("microsoft/ms_marco", "v1.1", split=split)
        return v11_rows_to_eval_set(v11_slice(rows, queries), name=name)
    ir_datasets = _optional("ir_datasets")
    dataset = ir_datasets.load(_IR_DATASETS_IDS[name])
    qrels: dict[str, dict[str, int]] = {}
    for row in dataset.qrels_iter():
        qrels.setdefault(row.query_id, {})[row.doc_id] = int(row.relevance)
    queries = {q.query_id: q.text for q in dataset.queries_iter() if q.query_id in qrels}
    scored: dict[str, list[tuple[float, str]]] = {}
    for row in dataset.scoreddocs_iter():
        if row.query_id in qrels:
            scored.setdefault(row.query_id, []).append((-row.score, row.doc_id))
    candidates = {q: [d for _, d in sorted(rows)] for q, rows in scored.items()}
    store = dataset.docs_store()
    needed = {d for docs in candidates.values() for d in docs}
    passages = {doc.doc_id: doc.text for doc in store.get_many_iter(needed)}
    return EvalSet(
        name, queries, passages, candidates, qrels,
        binary_rel_threshold=rel_threshold(name, None), description=NAMED_SETS[name][0],
    )


def download_training_pairs(*, max_pairs: int | None, seed: int) -> list[TrainingPair]:
    """Sample the ir_datasets triples by id first, then fetch only the sampled texts."""
    ir_datasets = _optional("ir_datasets")
    dataset = ir_datasets.load(_IR_DATASETS_IDS[TRAIN_SOURCE])
    k = None if max_pairs is None else max(1, max_pairs // 2)
    docpairs = reservoir_sample(dataset.docpairs_iter(), k, seed=seed)
    wanted = {p.query_id for p in docpairs}
    queries = {q.query_id: q.text for q in dataset.queries_iter() if q.query_id in wanted}
    store = dataset.docs_store()
    texts = {doc.doc_id: doc.text for doc in store.get_many_iter({d for p in docpairs for d in (p.doc_id_a, p.doc_id_b)})}
    return sample_pairs(triples_from_ir_datasets(docpairs, queries, texts.__getitem__), max_pairs=None, seed=seed)


def _optional(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"downloading MS MARCO / TREC DL needs the `{module}` package: pip install -e \".[data]\" "
            "(or give the official files in the spec's `files:`)"
        ) from None
