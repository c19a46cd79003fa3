"""Bad input to `python -m study.run` ends before Ray starts: one paragraph on stderr, exit 2, no traceback.

Each case runs the real command line in a subprocess (the cheapest invocation that reaches its check),
so a check that is missing shows up as a run that goes on to start Ray and times out, or exits 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from study import grids

SMOKE = ["--grid", "thesis", "--scale", "smoke"]
TIMEOUT_S = (
    60  # a refusal takes about a second; a run that got past the checks would start Ray
)


def _study_run(*argv: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = os.environ | {
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "HF_HUB_OFFLINE": "1",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "study.run", *argv],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    return done, time.monotonic() - started


def _saved_spec(storage: Path, name: str) -> Path:
    """A study directory as run_study leaves it before Tune writes anything: only study_spec.json."""
    spec = grids.build_study("thesis", scale="smoke", name=name, storage=str(storage))
    directory = storage / name
    directory.mkdir(parents=True)
    (directory / "study_spec.json").write_text(spec.model_dump_json(indent=2))
    return directory


def _config_with_infinite_lr(tmp_path: Path) -> Path:
    raw = grids.build_study("thesis", scale="smoke", name="inf-lr").model_dump(
        mode="json"
    )
    raw["trials"][0]["optimizer"]["lr"] = float("inf")
    path = tmp_path / "inf-lr.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "lr: .inf" in path.read_text()
    return path


def _reused_name(tmp_path: Path) -> list[str]:
    _saved_spec(tmp_path / "studies", "reused")
    return [*SMOKE, "--storage", str(tmp_path / "studies"), "--name", "reused"]


def _storage_is_a_file(tmp_path: Path) -> list[str]:
    (tmp_path / "a-file").write_text("not a directory\n")
    return [*SMOKE, "--storage", str(tmp_path / "a-file"), "--name", "x"]


def _resume_without_tune_state(tmp_path: Path) -> list[str]:
    return ["--resume", str(_saved_spec(tmp_path / "studies", "halfway"))]


CASES = {
    "reused name without --resume": (_reused_name, "already exists"),
    "name ..": (
        lambda tmp: [*SMOKE, "--name", "..", "--print-spec"],
        "is not a usable name",
    ),
    "300-character name": (
        lambda tmp: [*SMOKE, "--name", "n" * 300, "--print-spec"],
        "is not a usable name",
    ),
    "storage is a file": (_storage_is_a_file, "is a file"),
    "storage with unknown scheme": (
        lambda tmp: [*SMOKE, "--storage", "ftp://x/y", "--name", "x"],
        "unknown scheme ftp://",
    ),
    "lr: .inf in a config": (
        lambda tmp: ["--config", str(_config_with_infinite_lr(tmp)), "--print-spec"],
        "lr: Input should be a finite number",
    ),
    "seed 2**97": (
        lambda tmp: [*SMOKE, "--seeds", str(2**97), "--print-spec"],
        "seed: Input should be less than or equal to 4294967295",
    ),
    "--resume with only study_spec.json": (
        _resume_without_tune_state,
        "nothing to resume",
    ),
    "--address nobody listens on": (
        lambda tmp: [
            *SMOKE,
            "--storage",
            str(tmp / "studies"),
            "--address",
            "127.0.0.1:1",
        ],
        "no Ray cluster answers at 127.0.0.1:1",
    ),
    "credential in a --node-env value": (
        lambda tmp: [
            *SMOKE,
            "--node-env",
            "DATABASE_URL=postgresql://u:pw@db/x",
            "--print-spec",
        ],
        "DATABASE_URL look like credentials",
    ),
    "--compare with an unknown optimizer": (
        lambda tmp: ["--compare", "adamw", "lino", "--scale", "smoke"],
        "Did you mean 'lion'?",
    ),
    "--compare with a budget < 1": (
        lambda tmp: ["--compare", "adamw", "lion", "--budget", "0", "--scale", "smoke"],
        "--budget must be at least 1",
    ),
    "--compare with seeds that repeat": (
        lambda tmp: ["--compare", "adamw", "lion", "--confirm-seeds", "13,14,13", "--scale", "smoke"],
        "--confirm-seeds expects distinct seeds, but [13] repeat",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_paragraph_exit_2_before_ray(case, tmp_path):
    make_argv, expected = CASES[case]
    done, seconds = _study_run(*make_argv(tmp_path), cwd=tmp_path)
    err = done.stderr.strip()
    assert done.returncode == 2, (
        done.returncode,
        done.stdout[-2000:],
        done.stderr[-2000:],
    )
    assert err.startswith("error: ") and "\n\n" not in err and "Traceback" not in err, (
        err
    )
    assert expected in err, err
    assert seconds < 15, f"{case}: the refusal took {seconds:.1f} s"
    assert "Started a local Ray instance" not in done.stdout + done.stderr


def test_node_env_refusal_does_not_echo_the_secret(tmp_path):
    done, _ = _study_run(
        *SMOKE,
        "--node-env",
        "DATABASE_URL=postgresql://u:pw@db/x",
        "--print-spec",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "pw@" not in done.stderr and "postgresql://" not in done.stderr, done.stderr
    assert "pw@" not in done.stdout
