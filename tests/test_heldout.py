"""The thesis's evaluation loss: held-out training pairs, disjoint by query, the same for every trial."""

from __future__ import annotations

import random

from study.data.types import TrainingPair
from study.data.training_cache import split_heldout


def _pairs(n_queries: int, per_query: int) -> list[TrainingPair]:
    return [TrainingPair(f"query {q}", f"passage {q}-{i}", float(i == 0)) for q in range(n_queries) for i in range(per_query)]


def test_heldout_pairs_are_whole_queries_disjoint_from_training():
    pairs = _pairs(40, 3)
    train, heldout = split_heldout(pairs, 10)
    assert 10 <= len(heldout) < 13 and len(train) + len(heldout) == len(pairs)
    assert {p.query for p in train}.isdisjoint({p.query for p in heldout})
    assert len({p.query for p in heldout}) == 4  # whole queries: 4 x 3 pairs reach 10


def test_heldout_queries_do_not_depend_on_the_order_or_sample_of_the_pool():
    pairs = _pairs(40, 3)
    shuffled = random.Random(1).sample(pairs, len(pairs))
    assert {p.query for p in split_heldout(shuffled, 10)[1]} == {p.query for p in split_heldout(pairs, 10)[1]}
    # a bigger pool (another seed's sample, say) holds out the same queries where they are present
    bigger = _pairs(80, 3)
    held = {p.query for p in split_heldout(bigger, 10)[1]}
    assert held & {p.query for p in pairs} <= {p.query for p in split_heldout(pairs, 10)[1]}


def test_no_heldout_pairs_or_a_single_query_keeps_everything_for_training():
    pairs = _pairs(5, 2)
    assert split_heldout(pairs, 0) == (pairs, [])
    one_query = _pairs(1, 4)
    assert split_heldout(one_query, 100) == (one_query, [])
