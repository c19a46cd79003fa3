"""A disk cache of tokenized evaluation candidates, keyed by (data, tokenizer, max_length).

(Training pairs have their own entries, study/data/training_cache.py, in the same directory.)

Tokenizing a large candidate set (TREC DL's 43k pairs, MS MARCO dev's millions) costs more than
hashing it, so every trial of a study -- and every study on the machine or on a shared volume --
tokenizes each set once per tokenizer. Entries are written atomically (write, then rename), so
concurrent trials at worst both build the same entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eval.rerank import CandidatePairs, candidate_order, tokenize_candidates, with_tokens
from study.data.tokenized import TokenizedPairs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from study.data.types import EvalSet

CACHE_ENV = "STUDY_CACHE_DIR"


def cache_dir() -> Path:
    """STUDY_CACHE_DIR, else ~/.cache/reranker-study (point it at a shared volume on a cluster)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "reranker-study")


def cached_candidates(
    eval_set: EvalSet,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    with_token_type_ids: bool,
    depth: int | None,
    directory: Path | None = None,
) -> CandidatePairs:
    qids, docids = candidate_order(eval_set, depth)
    key = _fingerprint(eval_set, qids, docids, tokenizer, max_length, with_token_type_ids)
    path = (directory or cache_dir()) / "tokenized" / f"{eval_set.name}-{key[:20]}.npz"
    if path.exists():
        tokens, _ = load_tokens(path, with_token_type_ids=with_token_type_ids)
        return with_tokens(eval_set, qids, docids, tokens)
    pairs = tokenize_candidates(
        eval_set, tokenizer, max_length=max_length, with_token_type_ids=with_token_type_ids, depth=depth
    )
    save_tokens(path, pairs.tokens)
    return pairs


def save_tokens(path: Path, tokens: TokenizedPairs, **extra: np.ndarray) -> None:
    """Write atomically (a temporary file, then rename): readers see a whole entry or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    arrays = {"input_ids": tokens.input_ids, "offsets": tokens.offsets, "pad_token_id": np.array(tokens.pad_token_id)}
    if tokens.token_type_ids is not None:
        arrays["token_type_ids"] = tokens.token_type_ids
    np.savez(tmp, **arrays, **extra)
    os.replace(tmp, path)


def load_tokens(path: Path, *, with_token_type_ids: bool) -> tuple[TokenizedPairs, dict[str, np.ndarray]]:
    """An entry save_tokens wrote: the tokens, and the extra arrays saved with them."""
    with np.load(path) as saved:
        types = saved["token_type_ids"] if with_token_type_ids else None
        tokens = TokenizedPairs(saved["input_ids"], types, saved["offsets"], int(saved["pad_token_id"]))
        known = {"input_ids", "offsets", "pad_token_id", "token_type_ids"}
        extra = {name: saved[name] for name in saved.files if name not in known}
    return tokens, extra


def tokenizer_identity(digest, tokenizer: PreTrainedTokenizerBase, max_length: int, with_types: bool) -> None:
    """Feed what decides the tokens into `digest`: the tokenizer's definition and the call's settings."""
    for part in (type(tokenizer).__name__, tokenizer.name_or_path, str(len(tokenizer)), str(max_length), str(with_types)):
        digest.update(part.encode() + b"\0")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the tokenizer definition: vocabulary, normalizer, pre-tokenizer, template
        definition = json.loads(backend.to_str())
        for per_call in ("truncation", "padding"):  # set by each encode call, not part of the identity
            definition.pop(per_call, None)
        digest.update(json.dumps(definition, sort_keys=True).encode())


def _fingerprint(eval_set, qids, docids, tokenizer, max_length: int, with_types: bool) -> str:
    digest = hashlib.sha256()
    tokenizer_identity(digest, tokenizer, max_length, with_types)
    for qid, docid in zip(qids, docids):
        digest.update(f"{qid}\0{eval_set.queries[qid]}\0{docid}\0{eval_set.passages[docid]}\0".encode())
    return digest.hexdigest()
