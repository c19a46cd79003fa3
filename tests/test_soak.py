"""The soak script's quick mode: one trial through the CLI, killed (SIGKILL) at a random moment and resumed.

It starts its own `ray start` node, which the drivers join, so it carries the `cluster` marker (minutes).
"""

from __future__ import annotations

import pytest

from benchmarks import soak

pytestmark = pytest.mark.cluster


def test_a_study_killed_at_a_random_moment_resumes_to_the_same_results(tmp_path, capsys):
    assert soak.main(["--quick", "--cluster", "--dir", str(tmp_path)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "interruptions: SIGKILL@" in out
    assert "results identical to the uninterrupted run: yes" in out
    assert "results files unparseable at some moment: 0" in out
