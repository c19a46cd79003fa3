"""The soak script's quick mode: one trial through the CLI, killed (SIGKILL) at a random moment and resumed.

It starts its own `ray start` node, which the drivers join, so it carries the `cluster` marker (minutes).
"""

from __future__ import annotations

import pytest

from benchmarks import soak

pytestmark = pytest.mark.cluster


def test_a_study_killed_at_a_random_moment_resumes_to_the_same_results(tmp_path, capsys):
    soak.main(["--quick", "--cluster", "--optimizers", "lion", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "interruptions: SIGKILL@" in out, out
    assert "results identical to the uninterrupted run: yes" in out, out
    # The study's own files are written atomically; a trial's per-query files, copied into the study by
    # Tune with each checkpoint, can be caught half-copied (see README, Reliability), so they are not asserted.
    assert "study results files unparseable at some moment: 0" in out, out
