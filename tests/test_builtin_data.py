"""Tests for the built-in synthetic passage-ranking collection (study.data.builtin)."""

from __future__ import annotations

import statistics

import ir_measures
import pytest

from study.data.builtin import SIZES, BuiltinDataset, build_builtin_dataset
from study.data.types import EvalSet

EVAL_NAMES = {"builtin-dl", "builtin-dev", "builtin-validation"}


@pytest.fixture(scope="module")
def smoke() -> BuiltinDataset:
    return build_builtin_dataset("smoke", seed=0)


@pytest.fixture(scope="module")
def demo() -> BuiltinDataset:
    return build_builtin_dataset("demo", seed=0)


def test_deterministic(smoke: BuiltinDataset) -> None:
    assert build_builtin_dataset("smoke", seed=0) == smoke


def test_seed_changes_output(smoke: BuiltinDataset) -> None:
    other = build_builtin_dataset("smoke", seed=1)
    assert other.train_pairs != smoke.train_pairs
    assert other.eval_sets["builtin-dl"].queries != smoke.eval_sets["builtin-dl"].queries


def test_unknown_size_lists_known_sizes() -> None:
    with pytest.raises(ValueError) as excinfo:
        build_builtin_dataset("huge")
    for name in SIZES:
        assert name in str(excinfo.value)


def test_sizes(smoke: BuiltinDataset, demo: BuiltinDataset) -> None:
    for ds, size in ((smoke, "smoke"), (demo, "demo")):
        cfg = SIZES[size]
        assert set(ds.eval_sets) == EVAL_NAMES
        assert len(ds.eval_sets["builtin-dl"].queries) == cfg.n_dl_queries
        assert len(ds.eval_sets["builtin-dev"].queries) == cfg.n_dev_queries
        assert len(ds.eval_sets["builtin-validation"].queries) == cfg.n_validation_queries
        for es in ds.eval_sets.values():
            assert all(len(c) == cfg.candidates_per_query for c in es.candidates.values())
    assert 400 <= len(smoke.train_pairs) <= 600
    assert 2500 <= len(demo.train_pairs) <= 3500


def test_candidates_have_passages_and_relevant(smoke: BuiltinDataset, demo: BuiltinDataset) -> None:
    for ds in (smoke, demo):
        for es in ds.eval_sets.values():
            assert set(es.candidates) == set(es.queries) == set(es.qrels)
            for qid, docids in es.candidates.items():
                assert len(set(docids)) == len(docids)
                assert all(es.passages[d].strip() for d in docids)
                assert set(docids) <= set(es.qrels[qid])  # candidates are judged
                assert any(es.qrels[qid][d] >= es.binary_rel_threshold for d in docids), (es.name, qid)


def test_qrels_grades(smoke: BuiltinDataset) -> None:
    dl = smoke.eval_sets["builtin-dl"]
    assert dl.binary_rel_threshold == 2
    dl_grades = {g for judged in dl.qrels.values() for g in judged.values()}
    assert dl_grades == {0, 1, 2, 3}
    for name in ("builtin-dev", "builtin-validation"):
        es = smoke.eval_sets[name]
        assert es.binary_rel_threshold == 1
        assert {g for judged in es.qrels.values() for g in judged.values()} == {0, 1}


def test_training_pairs(smoke: BuiltinDataset) -> None:
    labels = [p.label for p in smoke.train_pairs]
    assert set(labels) == {0.0, 1.0}
    assert 0.35 <= sum(labels) / len(labels) <= 0.65
    assert all(p.query and p.passage for p in smoke.train_pairs)


def test_train_queries_disjoint_from_eval(smoke: BuiltinDataset, demo: BuiltinDataset) -> None:
    for ds in (smoke, demo):
        train = {p.query for p in ds.train_pairs}
        seen: set[str] = set()
        for es in ds.eval_sets.values():
            texts = set(es.queries.values())
            assert not texts & train, es.name
            assert not texts & seen, es.name  # eval sets are disjoint from each other too
            seen |= texts


def test_demo_passage_length(demo: BuiltinDataset) -> None:
    texts = {d: t for es in demo.eval_sets.values() for d, t in es.passages.items()}
    lengths = [len(t.split()) for t in texts.values()]
    assert 60 <= statistics.mean(lengths) <= 80


def _ndcg10(es: EvalSet, run: dict[str, dict[str, float]]) -> float:
    return ir_measures.calc_aggregate([ir_measures.nDCG @ 10], es.qrels, run)[ir_measures.nDCG @ 10]


@pytest.mark.parametrize("size", ["smoke", "demo"])
def test_bm25_is_imperfect(size: str, smoke: BuiltinDataset, demo: BuiltinDataset) -> None:
    es = {"smoke": smoke, "demo": demo}[size].eval_sets["builtin-dl"]
    first_stage = _ndcg10(es, es.first_stage_run())
    oracle_run = {
        qid: {d: es.qrels[qid].get(d, 0) + 1.0 / (rank + 2) for rank, d in enumerate(docids)}
        for qid, docids in es.candidates.items()
    }
    oracle = _ndcg10(es, oracle_run)
    print(f"{size}: first-stage nDCG@10={first_stage:.3f}, oracle rerank nDCG@10={oracle:.3f}")
    assert 0.15 < first_stage < 0.9
    assert oracle > first_stage + 0.2


def test_eval_set_validation() -> None:
    with pytest.raises(ValueError) as excinfo:
        EvalSet(name="x", queries={"q1": "a"}, passages={"d1": "t"}, candidates={"q1": ["d1", "d2"]}, qrels={})
    assert all(s in str(excinfo.value) for s in ("'x'", "'q1'", "'d2'"))
    with pytest.raises(ValueError, match="q9"):
        EvalSet(name="x", queries={}, passages={"d1": "t"}, candidates={"q9": ["d1"]}, qrels={})
    es = EvalSet(
        name="x", queries={"q1": "a"}, passages={"d1": "t", "d2": "u"}, candidates={"q1": ["d1", "d2"]}, qrels={}
    )
    assert es.first_stage_run() == {"q1": {"d1": 2.0, "d2": 1.0}}
