"""The README's comparison command, quick variant (budget 1, one seed, one epoch), through a real local Ray: search, confirmation, report."""

from __future__ import annotations

import csv
import io

import pytest

from study.run import main

pytestmark = pytest.mark.ray


def test_compare_runs_search_confirmation_and_report(ray_cluster, tmp_path, capsys):
    argv = ["--compare", "adamw", "adafactor", "--models", "minilm", "--budget", "1", "--confirm-seeds", "1"]
    argv += ["--epochs", "1", "--scale", "smoke", "--storage", str(tmp_path), "--name", "cmp"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    directory = tmp_path / "cmp"
    report = (directory / "compare_report.md").read_text()
    assert "## minilm" in report and "Time to target" in report and "report:" in out
    assert (directory / "plots" / "minilm-convergence.png").stat().st_size > 0
    # both optimizers searched with the same budget; a budget of 1 is the default point alone
    timing = list(csv.DictReader(io.StringIO((directory / "tables" / "minilm-timing.csv").read_text())))
    assert [r["optimizer"] for r in timing] == ["adamw", "adafactor"]
    assert [r["search trials"] for r in timing] == ["1/1", "1/1"]
    quality = list(csv.DictReader(io.StringIO((directory / "tables" / "minilm-quality.csv").read_text())))
    assert {r["optimizer"] for r in quality} == {"adamw", "adafactor"}
    assert all(r["seeds"] == "1" and r["epoch"] == "1" for r in quality)
    confirm = sorted(p.parent.name for p in (directory / "confirm").glob("*/params.json"))
    assert any(name.startswith("minilm-adafactor-default") for name in confirm)
