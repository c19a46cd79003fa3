"""The search with its Optuna study in a real PostgreSQL server (the cluster set-up), trials in parallel.

`.ci/run` starts a throwaway server on 127.0.0.1 with `.ci/postgres.sh` and passes its URL in
STUDY_TEST_PG_URL (by hand: `eval "$(.ci/postgres.sh start)"`). Where no server could start, the
test is skipped with the reason the script gave.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from study.search.spec import build_search, study_dir

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")  # session scope and listed first: a skip does not start Ray
def postgres_url() -> str:
    url = os.environ.get("STUDY_TEST_PG_URL")
    if not url:
        reason = os.environ.get("STUDY_TEST_PG_SKIP") or (
            "STUDY_TEST_PG_URL is not set: start a server with `eval \"$(.ci/postgres.sh start)\"` (.ci/run does)"
        )
        pytest.skip(f"no PostgreSQL server: {reason}")
    return url


def test_search_keeps_its_optuna_study_in_postgres_with_parallel_trials(postgres_url, ray_cluster, tmp_path):
    import optuna

    from study.search.run import open_storage, run_search

    spec = build_search(
        scale="smoke",
        models=["gte"],
        optimizers=["lion"],
        epochs=1,
        max_pairs=48,
        num_samples=3,
        max_concurrent=2,
        scheduler="fifo",
        optuna_storage=postgres_url,
        storage=str(tmp_path),
        name=f"pg-{uuid.uuid4().hex[:8]}",  # the database outlives the test: a fresh study name
    )
    study_name = spec.optuna_study_name(spec.pairs[0])
    try:
        outcome = run_search(spec, verbose=0)
        assert outcome.complete

        study = optuna.load_study(study_name=study_name, storage=open_storage(postgres_url))
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
        assert study.trials[0].params == spec.pairs[0].thesis_point
        assert not (study_dir(spec) / "optuna.db").exists()  # nothing went to the SQLite default

        # two trials ran at the same time: their [start, end] intervals overlap
        intervals = []
        for result in (study_dir(spec) / spec.pairs[0].name).glob("*/result.json"):
            rows = [json.loads(line) for line in result.read_text().splitlines()]
            intervals.append((rows[0]["timestamp"] - rows[0]["time_this_iter_s"], rows[-1]["timestamp"]))
        assert len(intervals) == 3
        intervals.sort()
        assert any(later[0] < earlier[1] for earlier, later in zip(intervals, intervals[1:]))

        best = json.loads((study_dir(spec) / "best_configs.json").read_text())
        assert best["pairs"][0]["selected"]["test"]["builtin-smoke-dl/nDCG@10"] >= 0.0
    finally:
        try:
            optuna.delete_study(study_name=study_name, storage=open_storage(postgres_url))
        except KeyError:
            pass
