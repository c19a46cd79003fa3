"""Collections from local files: evaluation sets and training pairs for users' own data.

Evaluation follows trec_eval's convention: only judged queries are evaluated; judged queries whose
text is missing are an error, queries without judgments are left out (with a warning and a count).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from study.data.bm25 import bm25_candidates
from study.data.formats import (
    FormatError,
    read_candidates,
    read_corpus,
    read_judgments,
    read_queries,
)
from study.data.msmarco import rel_threshold
from study.data.subsets import query_fraction
from study.data.types import EvalSet, TrainingPair
from study.spec import CollectionSpec

log = logging.getLogger(__name__)


def in_split(spec: CollectionSpec) -> Callable[[str], bool]:
    """Whether a query id is in the spec's split: [0, test) test, [test, test + validation) validation,
    the rest training (the same three parts whichever split a spec names)."""
    test, validation = spec.test_fraction, spec.test_fraction + spec.validation_fraction
    if spec.split == "all":
        return lambda qid: True
    if spec.split == "test":
        return lambda qid: query_fraction(qid) < test
    if spec.split == "validation":
        return lambda qid: test <= query_fraction(qid) < validation
    return lambda qid: query_fraction(qid) >= validation


def collection_eval_set(name: str, spec: CollectionSpec, *, description: str = "") -> EvalSet:
    qrels = read_judgments(spec.qrels)
    keep = in_split(spec)
    judged = {qid for qid in qrels if keep(qid)}
    queries = read_queries(spec.queries) if spec.queries else {}
    if spec.candidates:
        found = read_candidates(spec.candidates)
        queries = found.queries | queries
        ranked = {q: docs for q, docs in found.ranked.items() if q in judged}
        passages = found.passages
        if spec.corpus:
            corpus = read_corpus(spec.corpus)
            passages = passages | {d: corpus[d] for docs in ranked.values() for d in docs if d in corpus}
        _check_passages(ranked, passages, spec.candidates)
    else:
        corpus = read_corpus(spec.corpus)
        _check_query_texts(judged, queries, spec)
        ranked = bm25_candidates(
            corpus,
            {q: queries[q] for q in judged},
            engine=spec.first_stage.engine,
            k1=spec.first_stage.k1,
            b=spec.first_stage.b,
            depth=spec.first_stage.depth,
        )
        passages = {d: corpus[d] for docs in ranked.values() for d in docs}
    _check_query_texts(set(ranked), queries, spec)
    unjudged = sum(1 for q in queries if q not in qrels)
    if unjudged:
        log.warning("%s: %d queries have no judgments and are left out of evaluation", name, unjudged)
    return EvalSet(
        name=name,
        queries={q: queries[q] for q in sorted(judged) if q in queries},
        passages=passages,
        candidates=ranked,
        qrels={q: qrels[q] for q in sorted(judged)},
        binary_rel_threshold=rel_threshold(name, spec.binary_rel_threshold),
        description=description or f"local collection {spec.qrels} ({spec.split} queries)",
    )


def collection_training_pairs(spec: CollectionSpec) -> list[TrainingPair]:
    """Judged relevant passages as positives and as many BM25 hard negatives, per training query."""
    qrels = read_judgments(spec.qrels)
    if spec.corpus is None:
        raise ValueError("training on a collection needs its corpus (for passage texts and BM25 negatives)")
    queries = read_queries(spec.queries) if spec.queries else {}
    corpus = read_corpus(spec.corpus)
    keep = in_split(spec)
    qids = sorted(q for q in qrels if keep(q))
    _check_query_texts(set(qids), queries, spec)
    ranked = bm25_candidates(
        corpus, {q: queries[q] for q in qids}, engine=spec.first_stage.engine, k1=spec.first_stage.k1,
        b=spec.first_stage.b, depth=spec.first_stage.depth,
    )
    pairs: list[TrainingPair] = []
    threshold = spec.binary_rel_threshold or 1
    for qid in qids:
        positives = sorted(d for d, rel in qrels[qid].items() if rel >= threshold and d in corpus)
        negatives = [d for d in ranked.get(qid, []) if qrels[qid].get(d, 0) < threshold]
        for positive, negative in zip(positives, negatives):
            pairs.append(TrainingPair(queries[qid], corpus[positive], 1.0))
            pairs.append(TrainingPair(queries[qid], corpus[negative], 0.0))
    if not pairs:
        raise ValueError(f"no training pairs: no query of {spec.qrels} ({spec.split} split) has a judged relevant passage")
    return pairs


def _check_passages(ranked: dict[str, list[str]], passages: dict[str, str], source: str) -> None:
    for qid, docs in ranked.items():
        for docid in docs:
            if docid not in passages:
                raise FormatError(
                    f"{source}: candidate {docid!r} of query {qid!r} is not in the corpus; give the corpus "
                    "that holds it (`corpus`), or candidates in MS MARCO top1000 TSV, which carry the text"
                )


def _check_query_texts(qids: set[str], queries: dict[str, str], spec: CollectionSpec) -> None:
    missing = sorted(q for q in qids if q not in queries)
    if missing:
        where = spec.queries or spec.candidates
        raise FormatError(
            f"{where}: {len(missing)} judged queries have no text (first: {missing[0]!r}); "
            "give a queries TSV that holds them"
        )
