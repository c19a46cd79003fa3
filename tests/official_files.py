"""Small data files in the official MS MARCO / TREC DL layouts, written by tests.

- triples.train.small.tsv: `query<TAB>positive passage<TAB>negative passage`
- msmarco-passagetest2019-top1000.tsv: `qid<TAB>pid<TAB>query<TAB>passage`, BM25 order per query
- 2019qrels-pass.txt: TREC qrels `qid Q0 pid grade` (NIST grades 0-3)
- the v1.1 QnA dev rows (each query's shown passages, `is_selected`) as TREC qrels plus a TREC run in
  the order shown, which is how a spec gives `msmarco-v1.1-qna-dev` its `files:`.
The texts are made of topic words, so a positive passage shares words with its query.
"""

from __future__ import annotations

import random
from pathlib import Path

TOPICS = ["river", "piano", "volcano", "bread", "comet", "tennis", "glacier", "violin", "desert", "harbor", "cactus", "tiger"]
FILLER = ["the", "a", "of", "and", "is", "in", "with", "for", "about", "many"]


def _passage(rng: random.Random, topic: str, words: int = 12) -> str:
    return " ".join([topic, *rng.choices(FILLER + [topic], k=words - 1)])


def write_triples(path: Path, *, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        topic, other = rng.sample(TOPICS, 2)
        lines.append(f"what is a {topic} {i}\t{_passage(rng, topic)}\t{_passage(rng, other)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_dl19(directory: Path, *, queries: int, depth: int, seed: int = 1) -> dict[str, Path]:
    """msmarco-passagetest2019-top1000.tsv and 2019qrels-pass.txt for `queries` queries of `depth` candidates."""
    rng = random.Random(seed)
    top, qrels = [], []
    for q in range(queries):
        qid, topic = str(19000 + q), TOPICS[q % len(TOPICS)]
        for rank in range(depth):
            pid = str(700000 + q * depth + rank)
            relevant = rank % 3 == 1
            top.append(f"{qid}\t{pid}\thow does a {topic} work\t{_passage(rng, topic if relevant else rng.choice(TOPICS))}")
            qrels.append(f"{qid} Q0 {pid} {rng.choice([2, 3]) if relevant else rng.choice([0, 1])}")
    files = {"candidates": directory / "msmarco-passagetest2019-top1000.tsv", "qrels": directory / "2019qrels-pass.txt"}
    files["candidates"].write_text("\n".join(top) + "\n", encoding="utf-8")
    files["qrels"].write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return files


def write_v11_dev(directory: Path, *, queries: int, shown: int, seed: int = 2) -> dict[str, Path]:
    """The v1.1 QnA dev rows as queries TSV + corpus TSV + qrels (is_selected) + a run in the shown order."""
    rng = random.Random(seed)
    query_lines, corpus, qrels, run = [], [], [], []
    for q in range(queries):
        qid, topic = str(9000 + q), TOPICS[(q + 5) % len(TOPICS)]
        query_lines.append(f"{qid}\twhere is the {topic}")
        selected = rng.randrange(shown)
        for i in range(shown):
            docid = f"{qid}-{i}"
            corpus.append(f"{docid}\t{_passage(rng, topic if i == selected else rng.choice(TOPICS))}")
            qrels.append(f"{qid} 0 {docid} {int(i == selected)}")
            run.append(f"{qid} Q0 {docid} {i + 1} {shown - i} shown")
    files = {
        "queries": directory / "v1.1-dev-queries.tsv",
        "corpus": directory / "v1.1-dev-passages.tsv",
        "qrels": directory / "v1.1-dev-qrels.txt",
        "candidates": directory / "v1.1-dev-shown.run",
    }
    for key, lines in (("queries", query_lines), ("corpus", corpus), ("qrels", qrels), ("candidates", run)):
        files[key].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files
