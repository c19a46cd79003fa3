"""The README's comparison command, quick variant (budget 1, one seed, one epoch), through a real local
Ray: search, confirmation, report; then `--resume DIR` on it, finished and stopped after its search."""

from __future__ import annotations

import csv
import io
import shutil

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

    # Resumed as a whole. Finished: nothing runs again (the confirmation is restored, already done).
    search_files = {p: p.read_bytes() for p in (directory / "search").glob("minilm-*/*/result.json")}
    confirm_files = {p: p.read_bytes() for p in (directory / "confirm").glob("*/result.json")}
    assert len(search_files) == 2 and len(confirm_files) == 2
    assert main(["--resume", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "Resuming comparison cmp" in out and "Search search: finished before, not run again" in out
    assert "Confirmation confirm: continuing its 2 trials" in out and "report:" in out
    assert {p: p.read_bytes() for p in confirm_files} == confirm_files
    # Stopped after its search (no confirmation yet): the confirmation runs, the search does not.
    shutil.rmtree(directory / "confirm")
    (directory / "compare_report.md").unlink()
    assert main(["--resume", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "Search search: finished before, not run again" in out and "Confirmation confirm: 2 trials" in out
    assert {p: p.read_bytes() for p in search_files} == search_files
    rerun = sorted(p.parent.name for p in (directory / "confirm").glob("*/params.json"))
    assert [n.rsplit("-", 1)[0] for n in rerun] == [n.rsplit("-", 1)[0] for n in confirm]  # the same trials again
    assert "## minilm" in (directory / "compare_report.md").read_text()
