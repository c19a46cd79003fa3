"""Training pairs sampled and tokenized once, cached on disk beside the evaluation candidates.

At full scale a trial samples 2M pairs from the 40M-line triples file and tokenizes them: many
minutes per trial, the same for every trial with the same data and tokenizer. The entry is keyed by
what decides its contents -- the data spec (source, size, file, max_pairs), the seed, the source's
identity, the tokenizer and max_length -- so the trials of a study, their restarts and later
studies read it instead of rebuilding it. Entries are written atomically (study/data/cache.py).

The source's identity: a local file (triples, a collection's files) by its path, size and
modification time, so an edited file is read again; a download by its dataset id (the releases
are fixed); the built-in collection by the generated pairs themselves (cheap to generate, and its
generator may change between versions of this project).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from study.data.cache import cache_dir, load_tokens, save_tokens, tokenizer_identity
from study.data.tokenized import TokenizedPairs, tokenize_pairs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from study.data.types import TrainingPair
    from study.spec import TrainDataSpec

log = logging.getLogger(__name__)
FORMAT = "training-pairs-v2"  # bump when the entry's layout or the sampling changes


Labelled = tuple[TokenizedPairs, np.ndarray]  # tokens and their float32 labels


def cached_training_tokens(
    data: TrainDataSpec,
    tokenizer: PreTrainedTokenizerBase,
    *,
    seed: int,
    max_length: int,
    with_token_type_ids: bool,
    heldout_pairs: int = 0,
    directory: Path | None = None,
) -> tuple[Labelled, Labelled | None]:
    """The training pairs and the held-out pairs (None when `heldout_pairs` is 0, or nothing can be
    held out), each tokenized with labels: read from the cache, or sampled, split
    (`split_heldout`), tokenized and cached."""
    from study.data import registry

    pairs = registry.load_training_pairs(data, seed=seed) if data.source == "builtin" else None
    key = training_key(data, tokenizer, seed=seed, max_length=max_length, with_token_type_ids=with_token_type_ids, pairs=pairs)
    path = (directory or cache_dir()) / "training" / f"{data.source}-{key[:20]}-heldout{heldout_pairs}.npz"
    held_path = path.with_suffix(".heldout.npz")
    if path.exists():  # written last: the held-out entry, if any, is complete
        tokens, extra = load_tokens(path, with_token_type_ids=with_token_type_ids)
        log.info("training pairs: %d from the cache %s", len(tokens), path)
        return (tokens, extra["labels"]), _load_labelled(held_path, with_token_type_ids) if held_path.exists() else None
    if pairs is None:
        pairs = registry.load_training_pairs(data, seed=seed)
    train, held = split_heldout(pairs, heldout_pairs)
    if len(held) >= len(train):  # e.g. the default 1000 held out of a small collection's pairs
        log.warning(
            "training.heldout_pairs holds out %d of %d training pairs for the evaluation loss, leaving %d to "
            "train on; lower it (0: none) for a small training set", len(held), len(pairs), len(train),
        )
    entries = [_tokenize(tokenizer, part, max_length, with_token_type_ids) if part else None for part in (train, held)]
    if entries[1] is not None:
        save_tokens(held_path, entries[1][0], labels=entries[1][1])
    save_tokens(path, entries[0][0], labels=entries[0][1])
    log.info("training pairs: %d sampled and tokenized (%d held out), cached in %s", len(train), len(held), path)
    return entries[0], entries[1]


def split_heldout(pairs: Sequence[TrainingPair], n_pairs: int) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """(training pairs, held-out pairs): whole queries, taken in the order of a hash of their text
    until at least `n_pairs` pairs are held out. At least one query always stays for training.
    (The held-out pairs give the thesis's evaluation loss: trainables/heldout.py.)"""
    if n_pairs <= 0:
        return list(pairs), []
    by_query: dict[str, int] = {}
    for pair in pairs:
        by_query[pair.query] = by_query.get(pair.query, 0) + 1
    held: set[str] = set()
    count = 0
    for query in sorted(by_query, key=_query_hash)[:-1]:  # never every query
        if count >= n_pairs:
            break
        held.add(query)
        count += by_query[query]
    return [p for p in pairs if p.query not in held], [p for p in pairs if p.query in held]


def _query_hash(query: str) -> str:
    return hashlib.sha1(query.encode("utf-8")).hexdigest()


def _tokenize(tokenizer: PreTrainedTokenizerBase, pairs: list[TrainingPair], max_length: int, with_types: bool) -> Labelled:
    tokens = tokenize_pairs(
        tokenizer,
        [p.query for p in pairs],
        [p.passage for p in pairs],
        max_length=max_length,
        with_token_type_ids=with_types,
    )
    return tokens, np.array([p.label for p in pairs], dtype=np.float32)


def _load_labelled(path: Path, with_token_type_ids: bool) -> Labelled:
    tokens, extra = load_tokens(path, with_token_type_ids=with_token_type_ids)
    return tokens, extra["labels"]


def training_key(
    data: TrainDataSpec,
    tokenizer: PreTrainedTokenizerBase,
    *,
    seed: int,
    max_length: int,
    with_token_type_ids: bool,
    pairs: list[TrainingPair] | None = None,
) -> str:
    """The cache key (hex); `pairs` are the built-in collection's, hashed as its identity."""
    digest = hashlib.sha256()
    parts = {"format": FORMAT, "data": data.model_dump(mode="json"), "seed": seed, "source": source_identity(data)}
    digest.update(json.dumps(parts, sort_keys=True).encode())
    tokenizer_identity(digest, tokenizer, max_length, with_token_type_ids)
    for pair in pairs or ():
        digest.update(f"{pair.query}\0{pair.passage}\0{pair.label}\0".encode())
    return digest.hexdigest()


def source_identity(data: TrainDataSpec) -> list:
    """Path, size and modification time of every local file the pairs come from (none for a
    download or the built-in collection)."""
    files = [data.file] if data.file else []
    if data.collection is not None:
        c = data.collection
        files += [f for f in (c.queries, c.qrels, c.corpus, c.candidates) if f]
    identity = []
    for name in files:
        try:
            stat = os.stat(name)
        except FileNotFoundError:  # the loader says what is missing
            continue
        identity.append([str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns])
    return identity
