"""Soak: interrupt a study at random moments (SIGINT and SIGKILL), resume it each time, compare.

    python -m benchmarks.soak                  # MiniLM of the smoke grid (AdamW, Lion), 5 SIGINT + 5 SIGKILL
    python -m benchmarks.soak --quick          # one trial, one SIGKILL, then resume (what the test runs)

The same study runs twice from the command line (`python -m study.run`, its own local Ray each time):
once without interruption, once stopped by signals at random moments and continued with `--resume`
after each stop. Passes when
- the interrupted study ends with the same trials, epochs and metrics as the uninterrupted one
  (machine measurements -- times, throughput, memory -- aside), and
- every results file was parseable whenever it was looked at (every 0.5 s while a driver ran):
  whole-file JSON (results.json, study_spec.json, per-query files, params.json) parses, CSVs read,
  and the JSON-lines logs (Tune's result.json, steps.jsonl) hold only whole lines but a last one
  still being written.
A measurement, not a timed test: it prints what it saw and exits 0 (pass) or 1 (differences).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

POLL_S = 0.5
MACHINE_WORDS = ("time", "per_s", "throughput", "memory", "timestamp", "date", "hostname", "pid", "node_ip")
JSON_LINES = ("result.json", "steps.jsonl")
TUNE_PICKLES = "basic-variant-state-"  # Tune's search state: a pickle, though its name ends in .json
RAY_START_TIMEOUT = b"The current node timed out during startup"  # Ray's own, hard-coded 30 s


def study_config(path: Path, *, models: list[str], optimizers: list[str] | None, epochs: int) -> Path:
    """The smoke grid, cut to `models` x `optimizers`, one trial at a time (so runs compare step for step)."""
    from study import grids

    spec = grids.build_study("thesis", scale="smoke", name="soak")
    spec = grids.restrict(spec, models=models, optimizers=optimizers, epochs=epochs, max_concurrent=1)
    raw = spec.model_dump(mode="json")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


TIMINGS: dict[str, float] = {}
CLUSTER: dict[str, object] = {}  # with --cluster: the head node's address and its clients' environment


def driver(argv: list[str], log: Path) -> subprocess.Popen:
    # Its own process group: SIGINT reaches the driver as Ctrl+C would, and nothing else of ours.
    env = os.environ | {"RAY_DEDUP_LOGS": "0"}
    if CLUSTER:
        argv, env = [*argv, "--address", str(CLUSTER["address"])], env | CLUSTER["env"]
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "study.run", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def start_cluster(root: Path):
    """One `ray start` head node that outlives the drivers (each driver joins it with --address)."""
    import socket

    from study.cluster.nodes import node_environment, start_head

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    env = {"RAY_AUTH_TOKEN_PATH": str(root / "auth_token"), "HF_HUB_OFFLINE": "1"}
    head = start_head(
        node_ip="127.0.0.1", port=free_port(), dashboard_port=free_port(), client_server_port=free_port(),
        num_cpus=2, temp_dir=root / "ray", env=env, extra_args=[f"--dashboard-agent-listen-port={free_port()}"],
    )
    CLUSTER.update(address=head.address, env=node_environment(env))
    return head


def unreadable_files(study: Path) -> list[str]:
    """Results files that do not parse now (a JSON-lines log's unfinished last line is allowed)."""
    bad = []
    files = (Path(d) / n for d, _, names in os.walk(study) for n in names)  # os.walk skips vanished folders
    for path in files:
        if path.suffix not in (".json", ".jsonl", ".csv") or path.name.startswith(TUNE_PICKLES):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue  # removed or replaced between listing and reading (old checkpoints, atomic renames)
        except (OSError, UnicodeDecodeError) as err:
            bad.append(f"{path.relative_to(study)}: {err}")
            continue
        try:
            if path.name in JSON_LINES:
                lines = text.split("\n")
                for line in lines[:-1]:  # the last piece has no newline yet: a write in progress
                    if line.strip():
                        json.loads(line)
            elif path.suffix == ".json":
                json.loads(text)
            else:
                list(csv.reader(text.splitlines()))
        except (json.JSONDecodeError, csv.Error) as err:
            bad.append(f"{path.relative_to(study)}: {err}")
    return bad


def watch(process: subprocess.Popen, study: Path, *, stop_after: float | None, sig: int | None) -> tuple[bool, list[str]]:
    """Run until exit, or until `stop_after` s and then `sig`; check the files all along.

    Returns (whether the driver finished by itself with exit 0, the unparseable files seen); records in
    TIMINGS when the driver's first trial report (epoch 0, before training) reached the study.
    """
    started, problems, signalled = time.monotonic(), [], False
    TIMINGS.pop("first_report_s", None)
    while process.poll() is None:
        if "first_report_s" not in TIMINGS and any(p.stat().st_size for p in study.glob("*/result.json")):
            TIMINGS["first_report_s"] = time.monotonic() - started
        if stop_after is not None and time.monotonic() - started >= stop_after:
            # To the whole process group, as Ctrl+C in a terminal; SIGKILL as if the machine died
            # (the local Ray started by the driver shares its fate).
            os.killpg(process.pid, sig)
            signalled = True
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                problems.append(f"the driver did not stop within 120 s of {signal.Signals(sig).name}")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            break
        if study.exists():
            problems += unreadable_files(study)
        time.sleep(POLL_S)
    if study.exists():
        problems += unreadable_files(study)
    return process.returncode == 0 and not signalled, problems


def run_to_end(argv: list[str] | Callable[[], list[str]], study: Path, log: Path, *, attempts: int = 3) -> tuple[bool, list[str]]:
    """A driver run to its end; started again when Ray itself did not start (a loaded machine)."""
    problems: list[str] = []
    for _ in range(attempts):
        seen_before = log.stat().st_size if log.exists() else 0
        finished, seen = watch(driver(argv() if callable(argv) else argv, log), study, stop_after=None, sig=None)
        problems += seen
        with log.open("rb") as handle:
            handle.seek(seen_before)
            ray_did_not_start = RAY_START_TIMEOUT in handle.read()
        if finished or not ray_did_not_start:
            return finished, problems
        print("  (Ray did not start within its 30 s on this loaded machine: starting the driver again)")
    return False, problems


def _start_or_resume(common: list[str], soaked: Path) -> list[str]:
    from study.cluster.storage import TUNER_FILE, has_tune_state

    if (soaked / TUNER_FILE).exists() and has_tune_state(str(soaked)):
        return ["--resume", str(soaked)]
    if soaked.exists():  # stopped before Tune saved its state: as the refusal says, start it again
        shutil.rmtree(soaked)
    return [*common, "--name", soaked.name]


def comparable(results_json: Path) -> dict:
    """Per trial: status and each epoch's metrics, without machine measurements."""
    table = {}
    for trial in json.loads(results_json.read_text()):
        rows = [
            {k: v for k, v in row.items() if k in _compared(row) and not any(w in k.lower() for w in MACHINE_WORDS)}
            for row in trial["rows"]
        ]
        table[trial["name"]] = {"status": trial["status"], "rows": rows}
    return table


def _compared(row: dict) -> set[str]:
    """Metrics of every evaluation set (`<set>/<metric>`), the epoch, the step and the training loss."""
    return {k for k in row if "/" in k} | ({"epoch", "global_step", "train_loss"} & set(row))


def differences(reference: dict, soaked: dict) -> list[str]:
    found = []
    for name in sorted(set(reference) | set(soaked)):
        a, b = reference.get(name), soaked.get(name)
        if a is None or b is None:
            found.append(f"{name}: only in the {'soaked' if a is None else 'reference'} study")
        elif a["status"] != b["status"] or len(a["rows"]) != len(b["rows"]):
            found.append(f"{name}: {a['status']} with {len(a['rows'])} rows vs {b['status']} with {len(b['rows'])}")
        else:
            for ra, rb in zip(a["rows"], b["rows"]):
                changed = sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))
                if changed:
                    found.append(f"{name} epoch {ra.get('epoch')}: {', '.join(changed[:5])} differ")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one trial, one SIGKILL and a resume")
    parser.add_argument("--sigint", type=int, default=5, help="interruptions by SIGINT (Ctrl+C)")
    parser.add_argument("--sigkill", type=int, default=5, help="interruptions by SIGKILL")
    parser.add_argument("--models", nargs="+", default=["minilm"], help="smoke-grid models (default: minilm)")
    parser.add_argument("--optimizers", nargs="+", help="smoke-grid optimizers (default: adamw lion; --quick: lion)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="drivers join one `ray start` node instead of each starting its own local Ray "
        "(on a loaded machine Ray's hard-coded 30 s start-up limit can fail every local start)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per trial (the smoke grid's 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random moments")
    parser.add_argument("--dir", type=Path, help="where to keep the studies and logs (default: a temp dir)")
    args = parser.parse_args(argv)
    signals = [signal.SIGKILL] if args.quick else [signal.SIGINT] * args.sigint + [signal.SIGKILL] * args.sigkill
    rng = random.Random(args.seed)
    rng.shuffle(signals)
    root = args.dir or Path(tempfile.mkdtemp(prefix="soak-"))
    root.mkdir(parents=True, exist_ok=True)
    storage, log = root / "studies", root / "drivers.log"
    optimizers = args.optimizers or (["lion"] if args.quick else None)
    config = study_config(root / "soak.yaml", models=args.models, optimizers=optimizers, epochs=args.epochs)

    head = start_cluster(Path(tempfile.mkdtemp(prefix="sk-", dir="/tmp"))) if args.cluster else None
    try:
        return _soak(args, signals, rng, root, storage, log, config)
    finally:
        if head is not None:
            head.stop()


def _soak(args, signals, rng, root, storage, log, config) -> int:
    common = ["--config", str(config), "--storage", str(storage)]
    started = time.monotonic()
    finished, problems = run_to_end([*common, "--name", "reference"], storage / "reference", log)
    duration = time.monotonic() - started
    # Interruptions land while a driver trains: after its start-up (the reference's time to its
    # first report) and within about one epoch, so every one costs the study work to redo.
    startup = TIMINGS.get("first_report_s", 0.3 * duration)
    epoch_s = (duration - startup) / args.epochs
    if not finished:
        print(f"the uninterrupted run failed; see {log}")
        return 1
    print(f"uninterrupted run: {duration:.0f} s (first report after {startup:.0f} s, then {epoch_s:.0f} s per epoch)")

    soaked = storage / "soaked"
    interrupted: list[str] = []
    for sig in signals:
        moment = startup + rng.uniform(0.0, 1.2) * epoch_s
        done, seen = watch(driver(_start_or_resume(common, soaked), log), soaked, stop_after=moment, sig=sig)
        problems += seen
        interrupted.append(f"{signal.Signals(sig).name}@{moment:.0f}s")
        if done:
            interrupted.append("(finished before the signal)")
            break
    finished, seen = run_to_end(lambda: _start_or_resume(common, soaked), soaked, log)
    problems += seen
    print(f"interruptions: {' '.join(interrupted)}")
    if not finished:
        print(f"the resumed run did not finish; see {log}")
        return 1
    diffs = differences(comparable(storage / "reference" / "results.json"), comparable(soaked / "results.json"))
    problems = sorted(set(problems))
    # Files of the study itself (written by this project, atomically) vs a trial's files, which Tune
    # copies from the trial's working directory with each checkpoint (a plain copy, not atomic).
    in_study = [p for p in problems if "/" not in p.split(":", 1)[0]]  # paths relative to the study
    in_trials = [p for p in problems if p not in in_study]
    print(f"results identical to the uninterrupted run: {'yes' if not diffs else 'NO'}")
    for line in diffs:
        print(f"  {line}")
    print(f"study results files unparseable at some moment: {len(in_study)}")
    print(f"trial files (copied by Tune) unparseable at some moment: {len(in_trials)}")
    for line in problems[:20]:
        print(f"  {line}")
    print(f"total: {time.monotonic() - started:.0f} s; studies and driver logs in {root}")
    return 0 if not diffs and not problems else 1  # every file counts, the trials' copies too


if __name__ == "__main__":
    sys.exit(main())
