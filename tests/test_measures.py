from __future__ import annotations

import math

import pytest

from eval import measures
from eval.evaluator import binary_cross_entropy
from eval.rerank import length_sorted_batches
from eval.trec import read_qrels, read_run, write_run

QRELS = """\
q1 0 d1 3
q1 0 d2 1
q1 0 d3 0
q1 0 d4 2
q2 0 d5 1
q2 0 d6 2
"""

RUN = """\
q1 Q0 d2 1 0.9 sys
q1 Q0 d3 2 0.5 sys
q1 Q0 d4 3 0.3 sys
q1 Q0 d1 4 0.1 sys
q2 Q0 d6 1 2.0 sys
q2 Q0 d5 2 1.0 sys
"""


@pytest.fixture
def trec_files(tmp_path):
    (tmp_path / "qrels.txt").write_text(QRELS)
    (tmp_path / "run.trec").write_text(RUN)
    return read_qrels(tmp_path / "qrels.txt"), read_run(tmp_path / "run.trec")


def test_graded_metrics_by_hand(trec_files):
    qrels, run = trec_files
    means, per_query = measures.evaluate(run, qrels, binary_rel_threshold=2)
    # q1 ranks d2(1) d3(0) d4(2) d1(3); relevant at rel>=2: d4 (rank 3), d1 (rank 4)
    assert per_query["AP(rel=2)"]["q1"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert per_query["RR(rel=2)@10"]["q1"] == pytest.approx(1 / 3)
    assert per_query["P(rel=2)@5"]["q1"] == pytest.approx(2 / 5)
    assert per_query["R(rel=2)@5"]["q1"] == pytest.approx(1.0)
    assert per_query["R-Prec(rel=2)"]["q1"] == pytest.approx(0.0)  # top 2 hold no rel>=2 passage
    # the plain names count rel>=1 (trec_eval's default): d2, d4, d1 at ranks 1, 3, 4
    assert per_query["AP"]["q1"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 4) / 3)
    assert per_query["R-Prec"]["q1"] == pytest.approx(2 / 3)  # top 3 hold d2 and d4
    dcg = 1 / math.log2(2) + 0 + 2 / math.log2(4) + 3 / math.log2(5)  # gains are the grades
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert per_query["nDCG@10"]["q1"] == pytest.approx(dcg / ideal)
    # q2: the only rel>=2 passage (d6) is first
    assert per_query["AP(rel=2)"]["q2"] == pytest.approx(1.0)
    assert means["AP(rel=2)"] == pytest.approx(((1 / 3 + 2 / 4) / 2 + 1.0) / 2)


def test_binary_threshold_adds_named_measures_only(trec_files):
    qrels, run = trec_files
    at1, _ = measures.evaluate(run, qrels, binary_rel_threshold=1)
    at2, _ = measures.evaluate(run, qrels, binary_rel_threshold=2)
    assert set(at1) == set(measures.METRICS)
    assert set(at2) == set(measures.METRICS) | {measures.at_threshold(n, 2) for n in measures.BINARY}
    assert {n: at2[n] for n in at1} == at1  # the plain names do not move with the set's threshold
    assert at1["RR@10"] == pytest.approx(1.0)  # d2 (rel 1) counts at rel >= 1
    assert at2["RR(rel=2)@10"] == pytest.approx((1 / 3 + 1) / 2)


def test_judged_query_missing_from_run_scores_zero(trec_files):
    qrels, run = trec_files
    del run["q2"]
    means, per_query = measures.evaluate(run, qrels, binary_rel_threshold=2)
    assert per_query["AP(rel=2)"]["q2"] == 0.0
    assert means["AP(rel=2)"] == pytest.approx((1 / 3 + 2 / 4) / 4)


def test_every_declared_metric_parses():
    assert measures.PRIMARY_METRIC in measures.METRICS
    for name in measures.metric_names(2):
        measures.ir_measure(name)
    assert str(measures.ir_measure("P@10")) == "P@10"
    assert str(measures.ir_measure("P(rel=2)@10")) == "P(rel=2)@10"
    assert str(measures.ir_measure("R-Prec(rel=3)")) == "Rprec(rel=3)"
    with pytest.raises(ValueError, match=r"unknown metric .*'nDCG\(rel=2\)@10'"):
        measures.check_metric_names(["nDCG(rel=2)@10"])  # nDCG uses grades, it has no threshold


def test_run_file_round_trip(tmp_path, trec_files):
    _, run = trec_files
    path = write_run(run, tmp_path / "out" / "x.trec", tag="t")
    assert read_run(path) == {q: pytest.approx(d) for q, d in run.items()}
    first = path.read_text().splitlines()[0].split()
    assert first == ["q1", "Q0", "d2", "1", "0.900000", "t"]


def test_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 d1 1\nq1 0 d2\n")
    with pytest.raises(ValueError, match=r"qrels.txt:2: a TREC qrels .* line has 4 fields, but this one has 3"):
        read_qrels(path)
    path.write_text("q1 0 d1 high\n")
    with pytest.raises(ValueError, match=r"qrels.txt:1: relevance 'high' is not an integer"):
        read_qrels(path)


def test_eval_loss_is_bce_with_logits():
    import numpy as np

    logits = np.array([0.0, 2.0, -1.0], dtype=np.float32)
    labels = np.array([1.0, 1.0, 0.0], dtype=np.float32)
    expected = (math.log(2) + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 3
    assert binary_cross_entropy(logits, labels) == pytest.approx(expected)


def test_length_sorted_batches_cover_every_pair_once():
    import numpy as np

    lengths = np.array([5, 9, 1, 7, 7, 3, 2])
    batches = length_sorted_batches(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    assert lengths[batches[0]].tolist() == [9, 7, 7]
