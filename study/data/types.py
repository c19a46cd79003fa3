"""Plain data types shared by the training and evaluation code (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingPair:
    """One pointwise training example: label 1.0 = relevant, 0.0 = not."""

    query: str
    passage: str
    label: float


@dataclass(frozen=True)
class EvalSet:
    """Queries with first-stage candidates to rerank and judgments to score the reranking."""

    name: str  # e.g. "builtin-dl"
    queries: dict[str, str]  # qid -> text
    passages: dict[str, str]  # docid -> text (at least every candidate)
    candidates: dict[str, list[str]]  # qid -> docids in first-stage (BM25) order, best first
    qrels: dict[str, dict[str, int]]  # qid -> docid -> graded relevance
    # the grade the set's own convention counts as relevant; binary measures are computed at rel >= 1 and,
    # when this is higher, also at this grade, named apart (`P(rel=2)@10`; eval/measures.py)
    binary_rel_threshold: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        for qid, docids in self.candidates.items():
            if qid not in self.queries:
                raise ValueError(f"eval set {self.name!r}: candidate qid {qid!r} has no query text")
            for docid in docids:
                if docid not in self.passages:
                    raise ValueError(
                        f"eval set {self.name!r}: candidate docid {docid!r} of qid {qid!r} has no passage text"
                    )

    def first_stage_run(self) -> dict[str, dict[str, float]]:
        """The candidates as a scored run (descending scores by rank), for evaluating the first stage itself."""
        return {
            qid: {docid: float(len(docids) - rank) for rank, docid in enumerate(docids)}
            for qid, docids in self.candidates.items()
        }
