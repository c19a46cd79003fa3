"""manifest.json: versions, commit, command, machine and data checksums (the Ray run's is checked in test_study_ray.py)."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata

from study.tracking.manifest import (
    PROJECT_ROOT,
    build_manifest,
    command_line,
    header_lines,
)


def test_the_manifest_records_versions_commit_command_machine_and_data(tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 1\n")
    spec = {"trials": [{"evaluation": [{"name": "mine", "files": {"qrels": str(qrels), "corpus": str(tmp_path / "gone.tsv")}}]}]}
    manifest = build_manifest(spec, command_line("study.run", ["--grid", "thesis", "--name", "a b"]))

    assert manifest["command"] == "python -m study.run --grid thesis --name 'a b'"
    assert manifest["packages"]["torch"] == metadata.version("torch")
    assert set(manifest["packages"]) == {"torch", "transformers", "ray", "lion-pytorch", "optuna", "ir-measures"}
    head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert manifest["git"]["commit"] == head and isinstance(manifest["git"]["dirty"], bool)
    assert manifest["machine"]["cpu_count"] >= 1 and "cuda" in manifest["machine"]
    assert manifest["data"] == {
        str(qrels): hashlib.sha256(qrels.read_bytes()).hexdigest(),
        str(tmp_path / "gone.tsv"): "not found on the driver",
    }
    header = "\n".join(header_lines(manifest))
    assert f"project commit {head}" in header and "python -m study.run --grid thesis" in header
    assert "qrels.txt sha256 " in header
