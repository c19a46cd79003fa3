"""Loaders for the official file formats, local collections, BM25 first stage, training-pair sampling."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from study.data import msmarco
from study.data.bm25 import bm25_candidates, check_java
from study.data.formats import (
    FormatError,
    iter_triples,
    read_candidates,
    read_corpus,
    read_judgments,
    read_queries,
)
from study.data.local import collection_eval_set, collection_training_pairs, in_split
from study.data.registry import load_eval_set, load_training_pairs
from study.data.subsets import fixed_subset, query_fraction
from study.spec import CollectionSpec, EvalSetSpec, TrainDataSpec

# Column layouts of the official MS MARCO / TREC DL files (contents made up).
TOP1000 = (  # msmarco-passagetest2019-top1000.tsv and top1000.dev: qid, pid, query, passage
    "1037798\t7067032\twho is robert gray\tRobert Gray was an American sea captain.\n"
    "1037798\t7067030\twho is robert gray\tGray is a colour between black and white.\n"
    "104861\t1020327\tcost of interior concrete flooring\tConcrete floors cost 2 to 6 dollars a square foot.\n"
)
TREC_QRELS = "1037798 0 7067032 3\n1037798 0 7067030 0\n104861 Q0 1020327 2\n"  # 2019qrels-pass.txt
TRIPLES = (  # triples.train.small.tsv: query, positive passage, negative passage
    "is a little caffeine ok during pregnancy\tWe don't know a lot about caffeine in pregnancy.\tIt is very hot.\n"
    "what fruit is native to australia\tPassiflora herbertiana is native to Australia.\tApples grow in Kent.\n"
    "how large is the canadian military\tThe Canadian Armed Forces have 68,000 regulars.\tA tiny village.\n"
    "what is a bank transit number\tA transit number identifies a branch.\tThe river bank flooded.\n"
)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_top1000_tsv_keeps_bm25_order_and_texts(tmp_path):
    found = read_candidates(write(tmp_path, "top1000.tsv", TOP1000))
    assert found.ranked == {"1037798": ["7067032", "7067030"], "104861": ["1020327"]}
    assert found.queries["104861"] == "cost of interior concrete flooring"
    assert found.passages["7067030"].startswith("Gray is a colour")


def test_trec_run_candidates_are_ranked_by_score(tmp_path):
    run = "q1 Q0 d2 2 1.5 bm25\nq1 Q0 d1 1 9.0 bm25\nq2 Q0 d3 1 3.0 bm25\n"
    assert read_candidates(write(tmp_path, "run.trec", run)).ranked == {"q1": ["d1", "d2"], "q2": ["d3"]}


DL20_TOP1000 = (  # msmarco-passagetest2020-top1000.tsv: 200 queries' BM25 top-1000, 54 of them judged
    "1030303\t8726436\twho is aziz hashim\tAziz Hashim is the founder of NRD Capital.\n"
    "1030303\t8726437\twho is aziz hashim\tHashim is a common Arabic name.\n"
    "1043135\t2387785\twho killed nicholas ii of russia\tThe Bolsheviks shot the Romanov family in 1918.\n"
    "1049519\t1800041\twho said no one can make you feel inferior\tEleanor Roosevelt is credited with it.\n"
)
DL20_QRELS = "1030303 0 8726436 3\n1030303 0 8726437 1\n1043135 0 2387785 2\n"  # 2020qrels-pass.txt


@pytest.mark.parametrize(
    ("name", "year", "qrels", "top1000", "judged"),
    [
        ("trec-dl-2019", 2019, TREC_QRELS, TOP1000, {"1037798", "104861"}),
        ("trec-dl-2020", 2020, DL20_QRELS, DL20_TOP1000, {"1030303", "1043135"}),  # the full search's validation
    ],
)
def test_dl_sets_from_official_files(tmp_path, name, year, qrels, top1000, judged):
    """Read under the set's protocol (binary measures count rel >= 2) without being told; only judged
    queries are kept (DL20's top-1000 file holds 200 queries, 54 of them judged)."""
    spec = EvalSetSpec(
        name=name,
        files=CollectionSpec(
            qrels=write(tmp_path, f"{year}qrels-pass.txt", qrels),
            candidates=write(tmp_path, f"msmarco-passagetest{year}-top1000.tsv", top1000),
        ),
    )
    eval_set = load_eval_set(spec)
    assert eval_set.binary_rel_threshold == 2 and set(eval_set.queries) == judged
    first = read_candidates(spec.files.candidates).ranked
    assert all(eval_set.candidates[q] == first[q] for q in judged)  # in the file's BM25 order
    assert eval_set.description.startswith(f"TREC DL {year} passage")


def _v11_row(qid: int, selected: list[int]) -> dict:
    texts = [f"passage {qid}-{i}" for i in range(len(selected))]
    return {"query_id": qid, "query": f"query {qid}", "passages": {"is_selected": selected, "passage_text": texts, "url": ["u"] * len(texts)}}


def test_the_validation_sets_download_through_their_packages(monkeypatch):
    """trec-dl-2020 from ir_datasets' judged subset; the v1.1 slice from HF's *train* split, a fixed
    set of answerable queries whatever the row order."""
    from collections import namedtuple
    from types import SimpleNamespace

    qrel, query, scored, doc = (namedtuple(n, f) for n, f in [
        ("Qrel", "query_id doc_id relevance"), ("Query", "query_id text"), ("Scored", "query_id doc_id score"), ("Doc", "doc_id text")
    ])
    loaded: list = []
    texts = {"p1": "passage one", "p2": "passage two"}
    dl20 = SimpleNamespace(
        qrels_iter=lambda: [qrel("q1", "p1", 3), qrel("q1", "p2", 1)],
        queries_iter=lambda: [query("q1", "how do wings lift"), query("q9", "unjudged")],
        scoreddocs_iter=lambda: [scored("q1", "p2", 9.5), scored("q1", "p1", 11.0), scored("q9", "p1", 1.0)],
        docs_store=lambda: SimpleNamespace(get_many_iter=lambda ids: [doc(d, texts[d]) for d in sorted(ids)]),
    )
    rows = [_v11_row(i, [0, 1] if i % 3 else [0, 0]) for i in range(30)]
    fakes = {
        "ir_datasets": SimpleNamespace(load=lambda name: loaded.append(name) or dl20),
        "datasets": SimpleNamespace(load_dataset=lambda *args, split: loaded.append((*args, split)) or rows),
    }
    monkeypatch.setattr(msmarco, "_optional", fakes.__getitem__)
    eval_set = load_eval_set(EvalSetSpec(name="trec-dl-2020"))
    assert loaded.pop() == "msmarco-passage/trec-dl-2020/judged"
    assert eval_set.candidates == {"q1": ["p1", "p2"]} and eval_set.binary_rel_threshold == 2

    monkeypatch.setitem(msmarco.V11_SETS, "msmarco-v1.1-qna-train-slice", ("train", 5))
    first = load_eval_set(EvalSetSpec(name="msmarco-v1.1-qna-train-slice"))
    assert loaded.pop() == ("microsoft/ms_marco", "v1.1", "train")
    assert len(first.queries) == 5 and all(int(q) % 3 for q in first.queries)  # answerable queries only
    rows.reverse()
    assert load_eval_set(EvalSetSpec(name="msmarco-v1.1-qna-train-slice")).queries == first.queries


def test_corpus_formats(tmp_path):
    tsv = read_corpus(write(tmp_path, "collection.tsv", "0\tThe presence of communication.\n1\tThe Manhattan Project.\n"))
    assert tsv == {"0": "The presence of communication.", "1": "The Manhattan Project."}
    beir = write(tmp_path, "corpus.jsonl", json.dumps({"_id": "d1", "title": "Wings", "text": "lift."}) + "\n")
    assert read_corpus(beir) == {"d1": "Wings lift."}


@pytest.mark.parametrize(
    ("name", "text", "reader", "message"),
    [
        ("qrels.txt", "q1 0 d1 1\nq1 0 d2\n", read_judgments, r"qrels.txt:2: a TREC qrels .* has 4 fields, but this one has 3"),
        ("queries.tsv", "q1\tfine\nq2\t  \n", read_queries, r"queries.tsv:2: query 'q2' has no text"),
        ("queries.tsv", "q1\ta\nq1\tb\n", read_queries, r"queries.tsv:2: query id 'q1' appears twice"),
        ("corpus.tsv", "d1\ta\nd1\tb\n", read_corpus, r"corpus.tsv:2: passage id 'd1' appears twice"),
        ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{oops\n', read_corpus, r"corpus.jsonl:2: not valid JSON"),
        ("empty.tsv", "\n", read_queries, r"empty.tsv: the file is empty"),
        ("top1000.tsv", "q\td\tquery\tpassage\nq\td2\tquery\n", read_candidates, r"top1000.tsv:2: a top1000 TSV .* at least 4"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, name, text, reader, message):
    with pytest.raises(FormatError, match=message):
        reader(write(tmp_path, name, text))


def test_bad_triples_line(tmp_path):
    path = write(tmp_path, "triples.tsv", TRIPLES + "query only\tpositive\t\n")
    with pytest.raises(FormatError, match=r"triples.tsv:5: a triples line has 3 non-empty"):
        list(iter_triples(path))


def test_candidate_missing_from_corpus(tmp_path):
    spec = CollectionSpec(
        queries=write(tmp_path, "q.tsv", "q1\tsome query\n"),
        qrels=write(tmp_path, "qrels.txt", "q1 0 d1 1\n"),
        corpus=write(tmp_path, "c.tsv", "d1\tsome passage\n"),
        candidates=write(tmp_path, "run.trec", "q1 Q0 d1 1 2.0 x\nq1 Q0 d9 2 1.0 x\n"),
    )
    with pytest.raises(FormatError, match=r"run.trec: candidate 'd9' of query 'q1' is not in the corpus"):
        collection_eval_set("mine", spec)


def test_judged_query_without_text(tmp_path):
    spec = CollectionSpec(
        queries=write(tmp_path, "q.tsv", "q1\tsome query\n"),
        qrels=write(tmp_path, "qrels.txt", "q1 0 d1 1\nq2 0 d1 1\n"),
        corpus=write(tmp_path, "c.tsv", "d1\tsome passage\n"),
    )
    with pytest.raises(FormatError, match=r"q.tsv: 1 judged queries have no text \(first: 'q2'\)"):
        collection_eval_set("mine", spec)


def test_pair_sampler_is_deterministic_balanced_and_streaming(tmp_path):
    path = write(tmp_path, "triples.train.small.tsv", TRIPLES * 25)  # 100 triples
    spec = TrainDataSpec(source="msmarco-passage-train", file=path, max_pairs=40)
    first = load_training_pairs(spec, seed=12)
    assert first == load_training_pairs(spec, seed=12)
    assert first != load_training_pairs(spec, seed=13)
    assert len(first) == 40 and sum(p.label for p in first) == 20
    assert all(first[i].query == first[i + 1].query and first[i].label == 1.0 for i in range(0, 40, 2))
    everything = load_training_pairs(TrainDataSpec(source="triples", file=path), seed=0)
    assert len(everything) == 200


def test_reservoir_sample_is_uniform_enough():
    counts = [0] * 10
    for seed in range(2000):
        for item in msmarco.reservoir_sample(range(10), 3, seed=seed):
            counts[item] += 1
    assert all(abs(c / 2000 - 0.3) < 0.05 for c in counts)


def test_ir_datasets_docpairs_become_text_triples():
    from collections import namedtuple

    pair = namedtuple("GenericDocPair", "query_id doc_id_a doc_id_b")
    triples = list(msmarco.triples_from_ir_datasets([pair("q1", "a", "b")], {"q1": "query"}, {"a": "A", "b": "B"}.get))
    assert triples == [("query", "A", "B")]


def test_v11_qna_rows_become_an_eval_set(caplog):
    rows = [  # the layout of Hugging Face microsoft/ms_marco v1.1 validation rows
        {"query_id": 9652, "query": "what is rba", "passages": {"is_selected": [0, 1, 0], "passage_text": ["a", "b", "c"], "url": ["u"] * 3}},
        {"query_id": 9653, "query": "no answer", "passages": {"is_selected": [0, 0], "passage_text": ["d", "e"], "url": ["u"] * 2}},
    ]
    eval_set = msmarco.v11_rows_to_eval_set(rows)
    assert eval_set.candidates == {"9652": ["9652-0", "9652-1", "9652-2"]}
    assert eval_set.qrels == {"9652": {"9652-0": 0, "9652-1": 1, "9652-2": 0}}
    assert "1 queries have no selected passage and are left out" in caplog.text


def _tiny_collection(tmp_path: Path) -> CollectionSpec:
    topics = {
        "q1": ("wing lift at high speed", "wing lift grows with the square of speed"),
        "q2": ("boundary layer transition", "transition of the boundary layer to turbulence"),
        "q3": ("heat transfer in hypersonic flow", "hypersonic flow heats the surface strongly"),
        "q4": ("buckling of thin shells", "thin cylindrical shells buckle under axial load"),
    }
    corpus, queries, qrels = [], [], []
    for i, (qid, (query, answer)) in enumerate(topics.items()):
        queries.append(f"{qid}\t{query}")
        corpus.append(json.dumps({"_id": f"r{i}", "title": "", "text": answer}))
        corpus.append(json.dumps({"_id": f"n{i}", "title": "", "text": f"{query.split()[0]} tables and charts"}))
        qrels.append(f"{qid} 0 r{i} 2")
    return CollectionSpec(
        corpus=write(tmp_path, "corpus.jsonl", "\n".join(corpus) + "\n"),
        queries=write(tmp_path, "queries.tsv", "\n".join(queries) + "\n"),
        qrels=write(tmp_path, "qrels.txt", "\n".join(qrels) + "\n"),
        first_stage={"depth": 5},
    )


def test_local_collection_gets_bm25_candidates(tmp_path):
    spec = _tiny_collection(tmp_path)
    eval_set = collection_eval_set("tiny", spec)
    assert set(eval_set.candidates) == {"q1", "q2", "q3", "q4"}
    assert eval_set.candidates["q4"][0] == "r3"  # the only passage about shells
    pairs = collection_training_pairs(spec)
    assert [p.label for p in pairs[:2]] == [1.0, 0.0] and len(pairs) == 8


def test_splits_are_disjoint_and_stable(tmp_path):
    base = _tiny_collection(tmp_path).model_dump()
    train = {q for q in ("q1", "q2", "q3", "q4") if query_fraction(q) >= 0.5}
    test = collection_eval_set("t", CollectionSpec.model_validate(base | {"split": "test"}))
    assert set(test.qrels) == {"q1", "q2", "q3", "q4"} - train
    assert fixed_subset(["a", "b", "c", "d"], 2) == fixed_subset(["d", "c", "b", "a"], 2)


def test_validation_split_is_carved_from_the_training_part(tmp_path):
    base = _tiny_collection(tmp_path).model_dump() | {"test_fraction": 0.5, "validation_fraction": 0.4}
    qids = ("q1", "q2", "q3", "q4")
    parts = {}
    for split in ("train", "validation", "test"):
        keep = in_split(CollectionSpec.model_validate(base | {"split": split}))
        parts[split] = {q for q in qids if keep(q)}
    assert parts["validation"] == {q for q in qids if 0.5 <= query_fraction(q) < 0.9}
    assert parts == {"train": {"q2"}, "validation": {"q1", "q4"}, "test": {"q3"}}  # hash fractions .95 .88 .60 .47
    assert parts["train"] | parts["validation"] | parts["test"] == set(qids)
    assert sum(map(len, parts.values())) == len(qids)  # disjoint
    # without a validation share, train is the whole complement of test (the split as before)
    keep = in_split(CollectionSpec.model_validate(base | {"split": "train", "validation_fraction": 0.0}))
    assert {q for q in qids if keep(q)} == {"q1", "q2", "q4"}
    with pytest.raises(ValueError, match="validation_fraction > 0"):
        CollectionSpec.model_validate(base | {"split": "validation", "validation_fraction": 0.0})
    with pytest.raises(ValueError, match="must leave training queries"):
        CollectionSpec.model_validate(base | {"test_fraction": 0.5, "validation_fraction": 0.5})


def test_bm25_engines_agree(tmp_path):
    java = os.environ.get("JAVA_HOME", "/usr/lib/jvm/temurin-25-jdk-amd64")
    pytest.importorskip("pyserini", reason="the pyserini extra is not installed")
    if not Path(java, "bin", "java").exists() and not shutil.which("java"):
        pytest.skip("no Java found for pyserini")
    os.environ.setdefault("JAVA_HOME", java)
    try:
        check_java()
    except RuntimeError as err:
        pytest.skip(f"pyserini needs Java 21+: {err}")
    spec = _tiny_collection(tmp_path)
    corpus, queries = read_corpus(spec.corpus), read_queries(spec.queries)
    ours = bm25_candidates(corpus, queries, engine="bm25s", depth=3)
    lucene = bm25_candidates(corpus, queries, engine="pyserini", depth=3)
    assert {q: r[0] for q, r in ours.items()} == {q: r[0] for q, r in lucene.items()}


def test_too_old_java_is_refused(monkeypatch):
    if not Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java").exists():
        pytest.skip("no Java 17 on this machine to show the refusal with")
    monkeypatch.setenv("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
    with pytest.raises(RuntimeError, match=r"needs Java 21\+, but .* is Java 17"):
        check_java()


def test_local_collection_trains_and_evaluates_end_to_end(tmp_path, smoke_study):
    """BM25 candidates, fine-tuning on the train split and evaluation on the test split, one trial."""
    from study.spec import TrialSpec
    from trainables.trial import run_trial

    collection = _tiny_collection(tmp_path).model_dump()
    trial = smoke_study.trials[0].model_dump()
    trial["training"] |= {"epochs": 1, "data": {"source": "collection", "collection": collection | {"split": "train"}}}
    trial["evaluation"] = [{"name": "tiny-test", "files": collection | {"split": "test"}}]
    reports = []
    run_trial(TrialSpec.model_validate(trial), trial_dir=tmp_path / "trial", report=lambda m, c: reports.append(m))
    assert [r["epoch"] for r in reports] == [0, 1]
    assert all(0.0 <= r["tiny-test/nDCG@10"] <= 1.0 for r in reports)
    assert (tmp_path / "trial" / "runs" / "tiny-test.epoch1.trec").read_text().count(" Q0 ") > 0


def test_byte_order_marks_and_crlf_change_nothing(tmp_path):
    """Files saved by Windows tools (UTF-8 BOM, CRLF) give the same ids, texts and evaluation set as plain ones."""
    bom = b"\xef\xbb\xbf"
    plain = {
        "qrels.txt": b"1 0 d1 1\n1 0 d2 0\n2 0 d2 2\n",
        "queries.tsv": b"1\tfirst query\n2\tsecond query\n",
        "corpus.tsv": b"d1\tthe first passage\nd2\tthe second passage\n",
        "run.trec": b"1 Q0 d1 1 2.0 bm25\n1 Q0 d2 2 1.0 bm25\n2 Q0 d2 1 3.0 bm25\n",
    }
    sets = {}
    for variant, transform in {"plain": lambda b: b, "windows": lambda b: bom + b.replace(b"\n", b"\r\n")}.items():
        folder = tmp_path / variant
        folder.mkdir()
        for name, content in plain.items():
            (folder / name).write_bytes(transform(content))
        spec = CollectionSpec(**{kind: str(folder / name) for kind, name in
                                 zip(("qrels", "queries", "corpus", "candidates"), plain)})
        sets[variant] = collection_eval_set("mine", spec)
    assert (tmp_path / "windows" / "qrels.txt").read_bytes().startswith(bom)
    windows, expected = sets["windows"], sets["plain"]
    assert windows.qrels == expected.qrels == {"1": {"d1": 1, "d2": 0}, "2": {"d2": 2}}
    assert windows.queries == expected.queries and windows.passages == expected.passages
    assert windows.candidates == expected.candidates
    beir = tmp_path / "corpus.jsonl"
    beir.write_bytes(bom + json.dumps({"_id": "d1", "text": "lift."}).encode() + b"\r\n")
    assert read_corpus(beir) == {"d1": "lift."}
    triples = tmp_path / "triples.tsv"
    triples.write_bytes(bom + b"q\tpos\tneg\r\n")
    assert list(iter_triples(triples)) == [("q", "pos", "neg")]


def test_undecodable_bytes_name_file_line_and_column(tmp_path):
    path = tmp_path / "queries.tsv"
    path.write_bytes(b"q1\tfine\nq2\tcaf\xe9\n")
    with pytest.raises(FormatError, match=r"queries.tsv:2: not valid UTF-8 \(byte 0xe9 at column 7\)"):
        read_queries(path)


def test_cranfield_example_trains_chooses_and_tests_on_disjoint_queries():
    """examples/local-collection.yaml (the README's Cranfield example; no data needed to read it):
    training, validation and test queries come from one partition, the best epoch is chosen on
    validation (the first set), and no held-out share swallows its ~1k training pairs."""
    from study.grids import load_study_file

    spec = load_study_file(Path(__file__).resolve().parents[1] / "examples" / "local-collection.yaml")
    assert {t.optimizer.name for t in spec.trials} == {"adamw", "lion"}
    for trial in spec.trials:
        train = trial.training.data.collection
        validation, test = (e.files for e in trial.evaluation)
        assert (train.split, validation.split, test.split) == ("train", "validation", "test")
        fractions = {(c.test_fraction, c.validation_fraction) for c in (train, validation, test)}
        assert len(fractions) == 1 and train.validation_fraction > 0
        qids = [str(i) for i in range(300)]
        parts = [{q for q in qids if in_split(c)(q)} for c in (train, validation, test)]
        assert all(parts) and sum(map(len, parts)) == len(qids) == len(set().union(*parts))
        assert trial.training.heldout_pairs == 0 and trial.training.data.max_pairs is None
        assert trial.schedule.name == "linear"
    lr = {t.optimizer.name: t.optimizer.lr for t in spec.trials}
    assert 3 <= lr["adamw"] / lr["lion"] <= 10  # the Lion paper's ratio
