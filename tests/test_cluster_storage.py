"""A study stored at a URI, through the session's real Ray: Tune writes there, results come back."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.grids import restrict
from study.orchestrate import run_study
from study.cluster.connect import connect
from study.spec import StudySpec
from study.cluster.storage import load_study_spec

pytestmark = pytest.mark.ray


def test_a_study_stored_at_a_uri_is_read_back_into_a_local_mirror(ray_cluster, smoke_study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the local mirror is ./studies/<name>
    bucket = tmp_path / "bucket"
    uri = f"file://{bucket}"  # any pyarrow URI (s3://, gs://) takes this path through the code
    data = restrict(smoke_study, models=["minilm"], optimizers=["lion"], epochs=1, storage=uri, name="at-uri").model_dump()
    data["trials"][0]["training"]["data"]["max_pairs"] = 64
    outcome = run_study(StudySpec.model_validate(data), verbose=0)

    assert outcome.location == f"{uri}/at-uri"
    assert outcome.study_dir == tmp_path / "studies" / "at-uri"
    (trial,) = outcome.trials
    assert trial.status == "finished", trial.error
    assert [row["epoch"] for row in trial.rows] == [0, 1]
    for name in ("results.csv", "results.json", "summary.md"):
        assert (bucket / "at-uri" / name).read_text() == (outcome.study_dir / name).read_text()
    # The mirror has the run files but never the checkpoints, which stay in storage.
    assert (Path(trial.trial_dir) / "runs" / "builtin-smoke-dl.epoch1.trec").stat().st_size > 0
    assert list((bucket / "at-uri").glob("*/checkpoint_*")) and not list(outcome.study_dir.rglob("checkpoint_*"))

    saved = load_study_spec(outcome.location)  # what --resume reads
    assert (saved.storage, saved.name, saved.trials[0].training.data.max_pairs) == (uri, "at-uri", 64)


def test_env_vars_for_the_trials_need_the_first_connection(ray_cluster):
    with pytest.raises(RuntimeError, match=r"env_vars \(HF_HOME\) reach the trials only when this process connects"):
        connect(env_vars={"HF_HOME": "/cache/hf"})
