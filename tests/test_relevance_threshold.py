"""Which TREC DL 2019 grade the thesis counted as relevant, checked from NIST's qrels and its own numbers.

On a fixed qrels file, P@k fixes how many relevant passages the top-k lists hold in total, and that
bounds R@k: the total spread over the queries with the most relevant passages gives the least
recall, over those with the fewest the most. A reported (P@k, R@k) pair outside those bounds cannot
come from any ranking at that threshold. The thesis says it used "standard trec_eval" (rel >= 1);
its numbers agree, and at the track's rel >= 2 most of them are impossible. So the plain binary
measures count rel >= 1 and the rel >= 2 ones are named apart (eval/measures.py).
"""

from __future__ import annotations

import types

import pytest

from eval import measures
from eval.trec import read_qrels
from study.data import msmarco
from study.data.registry import load_eval_set
from study.reporting.thesis_numbers import lookup
from study.spec import CollectionSpec, EvalSetSpec

ROUNDING = 5e-5  # the thesis prints 4 decimals


def recall_bounds(relevant: list[int], k: int, precision: float) -> tuple[float, float] | None:
    """(least, most) mean R@k of any ranking whose mean P@k is `precision`; None when no ranking has it."""
    total = round(len(relevant) * k * precision)  # relevant passages in all top-k lists together

    def spread(order: list[int]) -> float | None:
        left, recall = total, 0.0
        for r in order:
            take = min(k, r, left)
            left -= take
            recall += take / r if r else 0.0
        return recall / len(relevant) if left == 0 else None

    least, most = spread(sorted(relevant, reverse=True)), spread(sorted(relevant))
    return None if least is None or most is None else (least, most)


def thesis_pairs() -> list[tuple[str, int, float, float]]:
    """(row, k, P@k, R@k) of Table 5.1 (k = 10) and Tables A.2 / A.3 (k = 5, 10, 20, 100): 90 pairs."""
    pairs = []
    for p_table, r_table in (("Table 5.1", "Table 5.1"), ("Table A.2", "Table A.3")):
        p_values, r_values = lookup(p_table), lookup(r_table)
        for (model, optimizer, epoch, metric), precision in p_values.items():
            if metric.startswith("P@"):
                k = int(metric.removeprefix("P@"))
                recall = r_values[(model, optimizer, epoch, f"R@{k}")]
                pairs.append((f"{p_table} {model}+{optimizer} epoch {epoch}", k, precision, recall))
    return pairs


def impossible(qrels: dict[str, dict[str, int]], rel: int) -> list[str]:
    relevant = [sum(grade >= rel for grade in judged.values()) for judged in qrels.values()]
    out = []
    for row, k, precision, recall in thesis_pairs():
        bounds = recall_bounds(relevant, k, precision)
        if bounds is None or not bounds[0] - ROUNDING <= recall <= bounds[1] + ROUNDING:
            out.append(f"{row} P@{k}={precision} R@{k}={recall}")
    return out


def test_shipped_qrels_are_nists_dl19_judgments():
    qrels = read_qrels(msmarco.DL19_QRELS)
    assert len(qrels) == 43
    assert sum(len(j) for j in qrels.values()) == 9260
    assert {g for j in qrels.values() for g in j.values()} == {0, 1, 2, 3}


def test_thesis_numbers_are_possible_only_at_rel_1():
    qrels = read_qrels(msmarco.DL19_QRELS)
    assert len(thesis_pairs()) == 90
    assert impossible(qrels, 1) == []
    at_2 = impossible(qrels, 2)
    assert len(at_2) == 73, at_2  # the count; most of the thesis's pairs
    # the example: GTE + AdamW epoch 1, P@10 0.8116 forces R@10 >= 0.26 at rel >= 2
    relevant_2 = [sum(g >= 2 for g in j.values()) for j in qrels.values()]
    assert recall_bounds(relevant_2, 10, 0.8116)[0] > 0.26  # the thesis reports 0.1689


def test_bounds_by_hand():
    # two queries with 1 and 4 relevant passages, P@2 = 0.5: two relevant passages in the top 2 lists
    assert recall_bounds([1, 4], 2, 0.5) == pytest.approx(((0 + 2 / 4) / 2, (1 + 1 / 4) / 2))
    assert recall_bounds([1, 1], 2, 1.0) is None  # four relevant passages in the top 2s cannot exist


DL19_QRELS_LINES = "q1 0 p1 3\nq1 0 p2 1\nq1 0 p3 0\nq1 0 p4 2\nq2 0 p5 1\nq2 0 p6 0\n"
CANDIDATES = [("q1", ["p2", "p3", "p4", "p1"]), ("q2", ["p6", "p5"])]
QUERIES = {"q1": "first query", "q2": "second query"}


def fake_ir_datasets() -> types.SimpleNamespace:
    """The ir_datasets calls download_eval_set makes, answered from the fixture (no network here)."""
    ns = types.SimpleNamespace
    rows = [line.split() for line in DL19_QRELS_LINES.splitlines()]
    dataset = ns(
        qrels_iter=lambda: [ns(query_id=q, doc_id=d, relevance=int(r)) for q, _, d, r in rows],
        queries_iter=lambda: [ns(query_id=q, text=t) for q, t in QUERIES.items()],
        scoreddocs_iter=lambda: [
            ns(query_id=q, doc_id=d, score=float(len(docs) - i)) for q, docs in CANDIDATES for i, d in enumerate(docs)
        ],
        docs_store=lambda: ns(get_many_iter=lambda ids: [ns(doc_id=d, text=f"passage {d}") for d in sorted(ids)]),
    )
    return ns(load=lambda dataset_id: dataset)


def test_dl19_from_files_and_downloaded_score_the_same(tmp_path, monkeypatch):
    (tmp_path / "qrels.txt").write_text(DL19_QRELS_LINES)
    (tmp_path / "top1000.tsv").write_text(
        "".join(f"{q}\t{d}\t{QUERIES[q]}\tpassage {d}\n" for q, docs in CANDIDATES for d in docs)
    )
    files = CollectionSpec(qrels=str(tmp_path / "qrels.txt"), candidates=str(tmp_path / "top1000.tsv"))
    from_files = load_eval_set(EvalSetSpec(name="trec-dl-2019", files=files))
    monkeypatch.setattr(msmarco, "_optional", lambda module: fake_ir_datasets())
    downloaded = load_eval_set(EvalSetSpec(name="trec-dl-2019"))

    assert from_files.binary_rel_threshold == downloaded.binary_rel_threshold == 2
    run = {"q1": {"p1": 0.1, "p2": 0.9, "p3": 0.5, "p4": 0.3}, "q2": {"p5": 1.0, "p6": 2.0}}
    scored = [
        measures.evaluate(run, s.qrels, binary_rel_threshold=s.binary_rel_threshold)[0] for s in (from_files, downloaded)
    ]
    assert scored[0] == scored[1]
    # both thresholds, named apart: rel >= 1 finds p2 first in q1 and p5 second in q2, rel >= 2 p4 third
    assert scored[0]["RR@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert scored[0]["RR(rel=2)@10"] == pytest.approx((1 / 3 + 0) / 2)
    # a user's own collection keeps rel >= 1 alone unless its spec says otherwise
    own = load_eval_set(EvalSetSpec(name="my-collection", files=files))
    assert own.binary_rel_threshold == 1
