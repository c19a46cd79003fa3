"""Readers for the standard IR file formats users bring, with errors that name file and line.

Formats:
- queries TSV: `qid<TAB>text` (MS MARCO, TREC DL topics)
- corpus TSV: `docid<TAB>text` (MS MARCO collection.tsv), or JSONL in BEIR style (`_id`, `title`, `text`)
- qrels: TREC (`qid 0 docid rel`, whitespace-separated; MS MARCO's qrels.*.tsv are the same)
- candidates: a TREC run (`qid Q0 docid rank score tag`) or MS MARCO top1000 TSV
  (`qid<TAB>pid<TAB>query<TAB>passage`, as in top1000.dev and msmarco-passagetest2019-top1000.tsv)
- training triples TSV: `query<TAB>positive passage<TAB>negative passage` (triples.train.small.tsv)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from eval.trec import read_qrels, read_run


class FormatError(ValueError):
    """A malformed input file; the message names the file and line."""


@dataclass(frozen=True)
class Candidates:
    """First-stage candidates per query, best first, and any passage or query text the file carried."""

    ranked: dict[str, list[str]]
    passages: dict[str, str]
    queries: dict[str, str]


def read_queries(path: str | Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for lineno, fields in _tsv(path, min_fields=2, what="queries TSV (qid<TAB>text)"):
        qid, text = fields[0], "\t".join(fields[1:]).strip()
        if not text:
            raise FormatError(f"{path}:{lineno}: query {qid!r} has no text")
        if qid in queries:
            raise FormatError(f"{path}:{lineno}: query id {qid!r} appears twice")
        queries[qid] = text
    return _non_empty(queries, path)


def read_corpus(path: str | Path) -> dict[str, str]:
    """Passages by id from TSV or BEIR-style JSONL (title and text joined), by file extension."""
    path = Path(path)
    corpus: dict[str, str] = {}
    if path.suffix == ".jsonl":
        rows = _jsonl_passages(path)
    else:
        rows = ((n, f[0], "\t".join(f[1:])) for n, f in _tsv(path, min_fields=2, what="corpus TSV (docid<TAB>text)"))
    for lineno, docid, text in rows:
        if docid in corpus:
            raise FormatError(f"{path}:{lineno}: passage id {docid!r} appears twice")
        corpus[docid] = text.strip()
    return _non_empty(corpus, path)


def read_judgments(path: str | Path) -> dict[str, dict[str, int]]:
    try:
        qrels = read_qrels(path)
    except ValueError as err:
        raise FormatError(str(err)) from None
    return _non_empty(qrels, path)


def read_candidates(path: str | Path) -> Candidates:
    """A TREC run or an MS MARCO top1000 TSV, told apart by the first line's layout."""
    path = Path(path)
    first = _first_line(path)
    if "\t" in first and len(first.split("\t")) == 4:
        return _top1000(path)
    try:
        run = read_run(path)
    except ValueError as err:
        raise FormatError(
            f"{err} (candidates must be a TREC run or an MS MARCO top1000 TSV: qid<TAB>pid<TAB>query<TAB>passage)"
        ) from None
    ranked = {qid: [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))] for qid, docs in run.items()}
    return Candidates(_non_empty(ranked, path), {}, {})


def iter_triples(path: str | Path) -> Iterator[tuple[str, str, str]]:
    """Stream (query, positive, negative) texts; never holds the file in memory."""
    for lineno, fields in _tsv(path, min_fields=3, what="triples TSV (query<TAB>positive<TAB>negative)"):
        if len(fields) != 3 or not all(f.strip() for f in fields):
            raise FormatError(
                f"{path}:{lineno}: a triples line has 3 non-empty tab-separated fields, but this one has "
                f"{sum(1 for f in fields if f.strip())} of {len(fields)}"
            )
        yield fields[0], fields[1], fields[2]


def _top1000(path: Path) -> Candidates:
    ranked: dict[str, list[str]] = {}
    passages: dict[str, str] = {}
    queries: dict[str, str] = {}
    for lineno, fields in _tsv(path, min_fields=4, what="top1000 TSV (qid<TAB>pid<TAB>query<TAB>passage)"):
        if len(fields) != 4:
            raise FormatError(f"{path}:{lineno}: a top1000 line has 4 tab-separated fields, but this one has {len(fields)}")
        qid, pid, query, passage = fields
        ranked.setdefault(qid, []).append(pid)  # the official files list candidates in BM25 order
        passages[pid] = passage
        queries[qid] = query
    return Candidates(_non_empty(ranked, path), passages, queries)


def _tsv(path: str | Path, *, min_fields: int, what: str) -> Iterator[tuple[int, list[str]]]:
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < min_fields:
                raise FormatError(
                    f"{path}:{lineno}: a {what} line has at least {min_fields} tab-separated fields, "
                    f"but this one has {len(fields)}: {line[:80]!r}"
                )
            yield lineno, fields


def _jsonl_passages(path: Path) -> Iterator[tuple[int, str, str]]:
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise FormatError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or "_id" not in row or "text" not in row:
                raise FormatError(f"{path}:{lineno}: a BEIR corpus line has '_id' and 'text' fields")
            title = str(row.get("title") or "").strip()
            text = str(row["text"])
            yield lineno, str(row["_id"]), f"{title} {text}" if title else text


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                return line.rstrip("\n")
    raise FormatError(f"{path}: the file is empty")


def _non_empty(value: dict, path: str | Path) -> dict:
    if not value:
        raise FormatError(f"{path}: the file is empty")
    return value
