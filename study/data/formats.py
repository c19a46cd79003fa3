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

from eval.text_files import numbered_lines
from eval.trec import iter_qrels, iter_run, read_qrels, read_run


class FormatError(ValueError):
    """A malformed input file; the message names the file and line."""


@dataclass(frozen=True)
class Candidates:
    """First-stage candidates per query, best first, and any passage or query text the file carried."""

    ranked: dict[str, list[str]]
    passages: dict[str, str]
    queries: dict[str, str]


def read_queries(path: str | Path) -> dict[str, str]:
    return _non_empty({qid: text for _, qid, text in iter_queries(path)}, path)


def iter_queries(path: str | Path) -> Iterator[tuple[int, str, str]]:
    """(line number, qid, text) per query; refuses a query without text and an id given twice."""
    seen: set[str] = set()
    for lineno, fields in _tsv(path, min_fields=2, what="queries TSV (qid<TAB>text)"):
        qid, text = fields[0], "\t".join(fields[1:]).strip()
        if not text:
            raise FormatError(f"{path}:{lineno}: query {qid!r} has no text")
        if qid in seen:
            raise FormatError(f"{path}:{lineno}: query id {qid!r} appears twice")
        seen.add(qid)
        yield lineno, qid, text


def read_corpus(path: str | Path) -> dict[str, str]:
    """Passages by id from TSV or BEIR-style JSONL (title and text joined), by file extension."""
    return _non_empty({docid: text for _, docid, text in iter_corpus(path)}, path)


def iter_corpus(path: str | Path) -> Iterator[tuple[int, str, str]]:
    """(line number, docid, text) per passage; refuses an id given twice (only ids are held)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = _jsonl_passages(path)
    else:
        rows = ((n, f[0], "\t".join(f[1:])) for n, f in _tsv(path, min_fields=2, what="corpus TSV (docid<TAB>text)"))
    seen: set[str] = set()
    for lineno, docid, text in rows:
        if docid in seen:
            raise FormatError(f"{path}:{lineno}: passage id {docid!r} appears twice")
        seen.add(docid)
        yield lineno, docid, text.strip()


def read_judgments(path: str | Path) -> dict[str, dict[str, int]]:
    try:
        qrels = read_qrels(path)
    except ValueError as err:
        raise FormatError(str(err)) from None
    return _non_empty(qrels, path)


def read_candidates(path: str | Path) -> Candidates:
    """A TREC run or an MS MARCO top1000 TSV, told apart by the first line's layout."""
    path = Path(path)
    if _is_top1000(path):
        return _top1000(path)
    try:
        run = read_run(path)
    except ValueError as err:
        raise FormatError(f"{err} ({CANDIDATE_FORMATS})") from None
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


CANDIDATE_FORMATS = "candidates must be a TREC run or an MS MARCO top1000 TSV: qid<TAB>pid<TAB>query<TAB>passage"


def check_file(path: str | Path, kind: str) -> None:
    """Read a whole file as its `kind` (queries, qrels, corpus, candidates, triples) without keeping it.

    Raises FormatError naming the file and line of the first problem, or saying why it cannot be read.
    """
    readers = {
        "queries": iter_queries,
        "qrels": lambda p: _as_format_error(iter_qrels(p)),
        "corpus": iter_corpus,
        "candidates": _iter_candidates,
        "triples": iter_triples,
    }
    try:
        lines = sum(1 for _ in readers[kind](path))
    except OSError as err:
        raise FormatError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not lines:
        raise FormatError(f"{path}: the file is empty")


def _iter_candidates(path: str | Path) -> Iterator[object]:
    path = Path(path)
    if _is_top1000(path):
        return _top1000_rows(path)
    return _as_format_error(iter_run(path), f" ({CANDIDATE_FORMATS})")


def _as_format_error(rows: Iterator, suffix: str = "") -> Iterator:
    """`rows`, with the ValueErrors of the TREC readers and the UTF-8 decoder raised as FormatError."""
    try:
        yield from rows
    except FormatError:
        raise
    except ValueError as err:
        raise FormatError(f"{err}{suffix}") from None


def _is_top1000(path: Path) -> bool:
    first = _first_line(path)
    return "\t" in first and len(first.split("\t")) == 4


def _top1000(path: Path) -> Candidates:
    ranked: dict[str, list[str]] = {}
    passages: dict[str, str] = {}
    queries: dict[str, str] = {}
    for qid, pid, query, passage in _top1000_rows(path):
        ranked.setdefault(qid, []).append(pid)  # the official files list candidates in BM25 order
        passages[pid] = passage
        queries[qid] = query
    return Candidates(_non_empty(ranked, path), passages, queries)


def _top1000_rows(path: Path) -> Iterator[list[str]]:
    for lineno, fields in _tsv(path, min_fields=4, what="top1000 TSV (qid<TAB>pid<TAB>query<TAB>passage)"):
        if len(fields) != 4:
            raise FormatError(f"{path}:{lineno}: a top1000 line has 4 tab-separated fields, but this one has {len(fields)}")
        yield fields


def _tsv(path: str | Path, *, min_fields: int, what: str) -> Iterator[tuple[int, list[str]]]:
    for lineno, line in _decoded(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < min_fields:
            raise FormatError(
                f"{path}:{lineno}: a {what} line has at least {min_fields} tab-separated fields, "
                f"but this one has {len(fields)}: {line[:80]!r}"
            )
        yield lineno, fields


def _decoded(path: str | Path) -> Iterator[tuple[int, str]]:
    """numbered_lines, with undecodable bytes reported as a FormatError."""
    return _as_format_error(numbered_lines(path))


def _jsonl_passages(path: Path) -> Iterator[tuple[int, str, str]]:
    for lineno, line in _decoded(path):
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
    for _, line in _decoded(path):
        if line.strip():
            return line
    raise FormatError(f"{path}: the file is empty")


def _non_empty(value: dict, path: str | Path) -> dict:
    if not value:
        raise FormatError(f"{path}: the file is empty")
    return value
