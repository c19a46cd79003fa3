"""BM25 first-stage candidates for a collection that comes without a run.

Two engines, one interface (`bm25_candidates`):
- `bm25s` (default): pure Python and NumPy, no system dependency; English stopwords and, when
  PyStemmer is installed, the Snowball English stemmer.
- `pyserini`: Lucene BM25 through Anserini, the IR community's reference implementation (an
  optional extra: `pip install -e ".[pyserini]"`; needs a Java 21+ JDK, found through JAVA_HOME).
Both default to Anserini's MS MARCO passage parameters, k1=0.82 and b=0.68.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ENGINES: tuple[str, ...] = ("bm25s", "pyserini")
MIN_JAVA = 21


def bm25_candidates(
    corpus: Mapping[str, str],
    queries: Mapping[str, str],
    *,
    engine: str = "bm25s",
    k1: float = 0.82,
    b: float = 0.68,
    depth: int = 100,
) -> dict[str, list[str]]:
    """Top-`depth` passage ids per query, best first (ties broken by passage id)."""
    if engine == "bm25s":
        return _bm25s(corpus, queries, k1=k1, b=b, depth=depth)
    if engine == "pyserini":
        return _pyserini(corpus, queries, k1=k1, b=b, depth=depth)
    from study.names import check_name

    check_name(engine, ENGINES, what="BM25 engine")
    raise AssertionError("unreachable")


def _bm25s(corpus: Mapping[str, str], queries: Mapping[str, str], *, k1: float, b: float, depth: int):
    import bm25s
    import numpy as np

    docids = sorted(corpus)
    stemmer = _stemmer()
    tokens = bm25s.tokenize([corpus[d] for d in docids], stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(tokens, show_progress=False)
    k = min(depth, len(docids))
    ranked: dict[str, list[str]] = {}
    for qid in sorted(queries):
        words = bm25s.tokenize([queries[qid]], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)[0]
        words = [w for w in words if w in retriever.vocab_dict]  # unseen words score nothing
        if not words:
            ranked[qid] = []
            continue
        scores = retriever.get_scores(words)
        order = np.lexsort((np.arange(len(docids)), -scores))[:k]  # by score, then by id order
        ranked[qid] = [docids[i] for i in order if scores[i] > 0]
    return ranked


def _stemmer():
    try:
        import Stemmer  # PyStemmer: the Snowball stemmers, closer to Lucene's analyzer
    except ImportError:
        return None
    return Stemmer.Stemmer("english").stemWords


def _pyserini(corpus: Mapping[str, str], queries: Mapping[str, str], *, k1: float, b: float, depth: int):
    check_java()
    os.environ.setdefault("OPENAI_API_KEY", "not-used")  # pyserini's import needs it set; BM25 never calls OpenAI
    try:
        from pyserini.search.lucene import LuceneSearcher
    except ImportError as err:
        raise RuntimeError(
            f"the pyserini BM25 engine needs the pyserini package ({err}): pip install -e \".[pyserini]\""
        ) from None
    with tempfile.TemporaryDirectory(prefix="bm25-") as tmp:
        docs, index = Path(tmp, "docs"), Path(tmp, "index")
        docs.mkdir()
        with (docs / "corpus.jsonl").open("w", encoding="utf-8") as out:
            for docid in sorted(corpus):
                out.write(json.dumps({"id": docid, "contents": corpus[docid]}) + "\n")
        subprocess.run(
            [sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection", "--input", str(docs),
             "--index", str(index), "--generator", "DefaultLuceneDocumentGenerator", "--threads", "1"],
            check=True,
            capture_output=True,
            env=os.environ | {"JAVA_HOME": java_home()},
        )
        searcher = LuceneSearcher(str(index))
        searcher.set_bm25(k1, b)
        qids = sorted(queries)
        hits = searcher.batch_search([queries[q] for q in qids], qids, k=depth, threads=1)
        return {qid: [h.docid for h in hits.get(qid, [])] for qid in qids}


def java_home() -> str:
    """The JDK pyserini will use: JAVA_HOME, else the `java` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        return home
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(
            f"the pyserini BM25 engine needs Java {MIN_JAVA}+, but no JAVA_HOME is set and no `java` is on PATH. "
            f"Install a JDK {MIN_JAVA}+ and set JAVA_HOME to it, or use engine 'bm25s'."
        )
    return str(Path(java).resolve().parent.parent)


def check_java() -> int:
    """The Java major version pyserini would run on; RuntimeError when it is missing or too old."""
    home = java_home()
    java = Path(home, "bin", "java")
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=True).stderr
    except (OSError, subprocess.CalledProcessError):
        raise RuntimeError(f"JAVA_HOME={home} has no working bin/java; point JAVA_HOME at a JDK {MIN_JAVA}+") from None
    match = re.search(r'version "(\d+)', out)
    major = int(match.group(1)) if match else 0
    if major < MIN_JAVA:
        raise RuntimeError(
            f"the pyserini BM25 engine needs Java {MIN_JAVA}+, but {java} is Java {major}. Set JAVA_HOME to a "
            f"JDK {MIN_JAVA}+ (for example /usr/lib/jvm/temurin-25-jdk-amd64), or use engine 'bm25s'."
        )
    return major
