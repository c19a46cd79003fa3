"""The soak script's quick mode: one trial through the CLI, killed (SIGKILL) at a random step of its training and resumed.

It starts its own `ray start` node, which the drivers join, so it carries the `cluster` marker (minutes).
"""

from __future__ import annotations

import pytest

from benchmarks import soak

pytestmark = pytest.mark.cluster


def test_a_study_killed_at_a_random_moment_resumes_to_the_same_results(tmp_path, capsys):
    code = soak.main(["--quick", "--cluster", "--optimizers", "lion", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    # The signal is sent while the trial trains (a random step of its step log), and stops it there.
    assert "interruptions: 1 signals, 1 of them sent while a trial trained inside an epoch" in out, out
    assert "training stopped inside the epoch after 1" in out, out  # SIGKILL: at once
    assert "results identical to the uninterrupted run: yes" in out, out
    # Every file parsed whenever it was looked at: the study's own and the trials' (which reach the
    # study whole, trainables/artifacts.py; Tune's in-place copy was caught half-written).
    assert "study results files unparseable at some moment: 0" in out, out
    assert "trial files unparseable at some moment: 0" in out, out
    assert code == 0, out
