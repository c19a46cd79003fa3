"""Data is prepared once, before trials start: two processes racing build each cache once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--grid", "thesis", "--scale", "smoke", "--models", "minilm", "--optimizers", "adamw"]


def test_two_processes_preparing_at_once_build_each_cache_once(tmp_path):
    env = {**os.environ, "STUDY_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "study.data.prepare", *SMOKE]
    racers = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [r.communicate(timeout=120)[0] for r in racers]
    assert [r.returncode for r in racers] == [0, 0], outputs
    counts = sorted(
        (json.loads(line.removeprefix("prepared: ")) for o in outputs for line in o.splitlines() if line.startswith("prepared: ")),
        key=lambda c: c["trials"],
    )
    # one built the trial's data (the training pairs and 2 evaluation sets -> 3 tokenized caches);
    # the other waited for the lock, then found it prepared and built nothing
    assert [c["trials"] for c in counts] == [0, 1]
    assert [c["new_cache_files"] for c in counts] == [0, 4]
    assert len(list((tmp_path / "cache" / "training").glob("*.npz"))) == 2  # training and held-out pairs
    assert counts[0]["already_prepared"] == 1
    assert len(list((tmp_path / "cache" / "tokenized").glob("*.npz"))) == 2
    assert not list((tmp_path / "cache" / "tokenized").glob("*.tmp*"))


def test_a_trial_reads_prepared_data_without_the_lock(tmp_path, monkeypatch):
    from study.data import lock as prepare
    from study.grids import build_study

    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path))
    trial = build_study("thesis", scale="smoke").trials[0]
    taken = []
    monkeypatch.setattr(prepare, "data_lock", lambda: (taken.append(1), prepare.contextlib.nullcontext())[1])
    with prepare.data_guard(trial):
        pass
    assert taken == [1]  # not prepared: the lock
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / prepare.preparation_key(trial)).write_text("{}")
    with prepare.data_guard(trial):
        pass
    assert taken == [1]  # prepared: no lock
