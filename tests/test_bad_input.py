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
from types import SimpleNamespace

import pytest
import yaml

from study import grids

SMOKE = ["--grid", "thesis", "--scale", "smoke"]
SEARCH = ["--search", "optuna", "--scale", "smoke", "--num-samples", "1"]
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


def _config_holding_out_every_pair(tmp_path: Path) -> Path:
    raw = grids.build_study("thesis", scale="demo", name="all-held-out").model_dump(mode="json")
    raw["trials"][0]["training"]["heldout_pairs"] = raw["trials"][0]["training"]["data"]["max_pairs"]
    path = tmp_path / "all-held-out.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


QRELS = "q1 0 d1 1\nq2 0 d2 1\n"
QUERIES = "q1\tfirst query\nq2\tsecond query\n"
RUN = "q1 Q0 d1 1 2.0 bm25\nq1 Q0 d2 2 1.0 bm25\nq2 Q0 d2 1 3.0 bm25\n"
CORPUS = "d1\tthe first passage\nd2\tthe second passage\n"
TRIPLES = "a query\ta positive\ta negative\n"


def _config_with_files(tmp_path: Path, bad: str, content: bytes) -> list[str]:
    """A smoke study whose trials all evaluate on (and train from) local files; the `bad` one holds `content`."""
    texts = {"qrels": QRELS, "queries": QUERIES, "candidates": RUN, "corpus": CORPUS, "triples": TRIPLES}
    paths = {}
    for kind, text in texts.items():
        paths[kind] = tmp_path / f"{kind}.txt"
        paths[kind].write_bytes(content if kind == bad else text.encode())
    raw = grids.build_study("thesis", scale="smoke", name="files").model_dump(mode="json")
    files = {kind: str(paths[kind]) for kind in ("qrels", "queries", "candidates", "corpus")}
    for trial in raw["trials"]:
        trial["evaluation"] = [{"name": "mine", "files": files}]
        trial["training"]["data"] = {"source": "triples", "file": str(paths["triples"])}
    config = tmp_path / "files.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return ["--config", str(config), "--storage", str(tmp_path / "studies")]


def _bad_file(kind: str, content: bytes):
    return lambda tmp: _config_with_files(tmp, kind, content)


def _missing_file(tmp_path: Path) -> list[str]:
    argv = _config_with_files(tmp_path, "corpus", b"")
    (tmp_path / "corpus.txt").unlink()
    return argv


def _reused_name(tmp_path: Path) -> list[str]:
    _saved_spec(tmp_path / "studies", "reused")
    return [*SMOKE, "--storage", str(tmp_path / "studies"), "--name", "reused"]


def _storage_is_a_file(tmp_path: Path) -> list[str]:
    (tmp_path / "a-file").write_text("not a directory\n")
    return [*SMOKE, "--storage", str(tmp_path / "a-file"), "--name", "x"]


def _resume_without_tune_state(tmp_path: Path) -> list[str]:
    return ["--resume", str(_saved_spec(tmp_path / "studies", "halfway"))]


def _resume_before_the_first_tune_state(tmp_path: Path) -> list[str]:
    """What a driver stopped between writing tuner.pkl and Tune's first state save leaves (seen in the soak)."""
    directory = _saved_spec(tmp_path / "studies", "early")
    (directory / "tuner.pkl").write_bytes(b"Tune's pickled Tuner")
    return ["--resume", str(directory)]


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
    "--resume with tuner.pkl but no experiment state": (_resume_before_the_first_tune_state, "nothing to resume"),
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
    "--search with --storage ftp://": (
        lambda tmp: [*SEARCH, "--storage", "ftp://x/y"],
        "--search keeps its study in a local directory, but --storage is ftp://",
    ),
    "--search with --storage a file": (
        lambda tmp: [*SEARCH, "--storage", _storage_is_a_file(tmp)[-3]],
        "is a file, not a directory",
    ),
    "qrels line with 3 fields": (
        _bad_file("qrels", b"q1 0 d1 1\nq2 0 d2\n"),
        ("evaluation set 'mine', qrels file: ", "/qrels.txt:2: a TREC qrels (qid 0 docid relevance) line has 4 fields"),
    ),
    "qrels that are not UTF-8": (
        _bad_file("qrels", b"q1 0 d1 1\nq\xe9 0 d2 1\n"),
        "qrels.txt:2: not valid UTF-8 (byte 0xe9 at column 2)",
    ),
    "query without text": (_bad_file("queries", b"q1\tfirst\nq2\t \n"), "queries.txt:2: query 'q2' has no text"),
    "run score that is not a number": (
        _bad_file("candidates", b"q1 Q0 d1 1 high bm25\n"),
        "candidates.txt:1: score 'high' is not a number",
    ),
    "corpus id given twice": (_bad_file("corpus", b"d1\ta\nd1\tb\n"), "corpus.txt:2: passage id 'd1' appears twice"),
    "missing corpus file": (_missing_file, "corpus.txt: cannot be read (No such file or directory)"),
    "triples line with 2 fields": (
        _bad_file("triples", TRIPLES.encode() + b"query\tpositive only\n"),
        ("training data (`file`), triples file: ", "/triples.txt:2: a triples TSV"),
    ),
    "held-out pairs >= the pairs kept": (
        lambda tmp: ["--config", str(_config_holding_out_every_pair(tmp)), "--print-spec"],
        "training.heldout_pairs (800) holds out as many pairs as training.data.max_pairs (800) keeps",
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
    assert all(part in err for part in ((expected,) if isinstance(expected, str) else expected)), err
    assert seconds < 15, f"{case}: the refusal took {seconds:.1f} s"
    assert "Started a local Ray instance" not in done.stdout + done.stderr
    assert not (tmp_path / "ftp:").exists(), "a URI was taken as a local path"


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


def test_search_print_spec_and_resume_hide_the_optuna_password(tmp_path):
    url = "postgresql://user:s3cret-pw@db-host:5432/optuna"
    done, _ = _study_run(*SEARCH, "--optuna-storage", url, "--print-spec", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "optuna_storage: postgresql://user:***@db-host:5432/optuna" in done.stdout
    assert "s3cret" not in done.stdout + done.stderr

    from study.search import spec as search_spec

    saved = SimpleNamespace(name="s", optuna_storage=url)  # the fields a --resume check reads
    with pytest.raises(ValueError, match=r"\*\*\*@db-host") as refused:
        search_spec.check_resume_options(saved, {"--optuna-storage": url.replace("s3cret", "other")})
    assert "s3cret" not in str(refused.value) and "other-pw" not in str(refused.value)
