"""TREC run and qrels files: the formats trec_eval, ir_measures and every IR toolkit read."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from eval.text_files import numbered_lines


def write_run(run: Mapping[str, Mapping[str, float]], path: str | Path, *, tag: str) -> Path:
    """Write `qid Q0 docid rank score tag` lines, best first per query; atomically (write, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for qid in sorted(run):
            ranked = sorted(run[qid].items(), key=lambda item: (-item[1], item[0]))
            for rank, (docid, score) in enumerate(ranked, start=1):
                out.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    os.replace(tmp, path)
    return path


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a TREC run (6 whitespace-separated fields per line)."""
    run: dict[str, dict[str, float]] = {}
    for _, qid, docid, score in iter_run(path):
        run.setdefault(qid, {})[docid] = score
    return run


def iter_run(path: str | Path) -> Iterator[tuple[int, str, str, float]]:
    """(line number, qid, docid, score) per line of a TREC run; streams, so checking a big run holds nothing."""
    for lineno, fields in _lines(path, expected=6, what="TREC run (qid Q0 docid rank score tag)"):
        try:
            score = float(fields[4])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: score {fields[4]!r} is not a number") from None
        yield lineno, fields[0], fields[2], score


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Read TREC qrels (`qid iteration docid relevance`)."""
    qrels: dict[str, dict[str, int]] = {}
    for _, qid, docid, rel in iter_qrels(path):
        qrels.setdefault(qid, {})[docid] = rel
    return qrels


def iter_qrels(path: str | Path) -> Iterator[tuple[int, str, str, int]]:
    """(line number, qid, docid, relevance) per line of TREC qrels."""
    for lineno, fields in _lines(path, expected=4, what="TREC qrels (qid 0 docid relevance)"):
        try:
            rel = int(fields[3])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: relevance {fields[3]!r} is not an integer") from None
        yield lineno, fields[0], fields[2], rel


def _lines(path: str | Path, *, expected: int, what: str) -> Iterator[tuple[int, list[str]]]:
    for lineno, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != expected:
            raise ValueError(
                f"{path}:{lineno}: a {what} line has {expected} fields, but this one has "
                f"{len(fields)}: {line.rstrip()!r}"
            )
        yield lineno, fields
