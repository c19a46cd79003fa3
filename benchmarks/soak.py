"""Soak: interrupt a study at random moments (SIGINT and SIGKILL), resume it each time, compare.

    python -m benchmarks.soak                  # MiniLM of the smoke grid (AdamW, Lion), 6 epochs, 5 SIGINT + 5 SIGKILL
    python -m benchmarks.soak --quick          # one trial, one SIGKILL, then resume (what the test runs)

The same study runs twice from the command line (`python -m study.run`, its own local Ray each time):
once without interruption, once stopped by signals and continued with `--resume` after each stop.
Every signal lands while a trial trains: the script follows the running trial's step log (in its
working directory, one line a step) and sends the signal when it reaches a step drawn at random
within the next 1.5 epochs, never in an epoch's last steps; it prints where each signal landed and
where training then stopped (epoch, step within the epoch). Passes when
- every signal was sent while a trial trained, inside an epoch, and every driver stopped within 120 s,
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
    """The smoke grid, cut to `models` x `optimizers`, one trial at a time (so runs compare step for step).

    Its step log gets a line every step (not every 10), so the script sees each step as it is trained;
    that changes no result (a line is only a host sync), and both runs use this same config.
    """
    from study import grids

    spec = grids.build_study("thesis", scale="smoke", name="soak")
    spec = grids.restrict(spec, models=models, optimizers=optimizers, epochs=epochs, max_concurrent=1)
    raw = spec.model_dump(mode="json")
    for trial in raw["trials"]:
        trial["training"]["log_every"] = 1
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


CLUSTER: dict[str, object] = {}  # with --cluster: the head node's address and its clients' environment
RAY_DIR: dict[str, Path] = {}  # where the drivers' Ray keeps its sessions (and so the trials' working dirs)


def driver(argv: list[str], log: Path) -> subprocess.Popen:
    # Its own process group: SIGINT reaches the driver as Ctrl+C would, and nothing else of ours.
    env = os.environ | {"RAY_DEDUP_LOGS": "0"}
    if not CLUSTER:  # a local Ray of its own, in a folder of ours (not /tmp/ray, which others use)
        env["RAY_TMPDIR"] = str(RAY_DIR["root"])
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
    """Results files that do not parse now, a JSON-lines log's last line included (the study holds
    whole copies: study/cluster/whole_files.py, trainables/artifacts.py); each is printed when first
    seen, so a run cut short still says what it found."""
    bad = _unreadable(study)
    for problem in bad:
        if problem not in REPORTED:
            REPORTED.add(problem)
            print(f"  unparseable at {time.strftime('%H:%M:%S')}: {study.name}/{problem}", flush=True)
    return bad


REPORTED: set[str] = set()


def _unreadable(study: Path) -> list[str]:
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
                for line in text.split("\n"):  # every line whole: the study's copies end on a newline
                    if line.strip():
                        json.loads(line)
            elif path.suffix == ".json":
                json.loads(text)
            else:
                list(csv.reader(text.splitlines()))
        except (json.JSONDecodeError, csv.Error) as err:
            bad.append(f"{path.relative_to(study)}: {err}")
    return bad


def watch(process: subprocess.Popen, study: Path) -> tuple[bool, list[str]]:
    """Run until exit, checking the files all along: (whether the driver exited 0, the unparseable files seen)."""
    problems = []
    while process.poll() is None:
        if study.exists():
            problems += unreadable_files(study)
        time.sleep(POLL_S)
    if study.exists():
        problems += unreadable_files(study)
    return process.returncode == 0, problems


def step_logs(since: float) -> list[Path]:
    """The trials' step logs in their working directories written since `since` (time.time()), newest first."""
    found = []
    for path in RAY_DIR["root"].glob("**/working_dirs/*/steps.jsonl"):
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        if mtime >= since:
            found.append((mtime, path))
    return [path for _, path in sorted(found, reverse=True)]


def last_step(log: Path) -> tuple[int, int] | None:
    """(epoch, step) of the log's last whole line, or None while it has none."""
    try:
        lines = log.read_text(encoding="utf-8").split("\n")[:-1]
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            row = json.loads(line)
            return int(row["epoch"]), int(row["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return None


def draw_target(step: int, per_epoch: int, rng: random.Random) -> int:
    """A step within the next 1.5 epochs after `step`, never one of an epoch's last 3 (its end comes next)."""
    while True:
        target = step + rng.randint(1, max(1, int(1.5 * per_epoch)))
        if not _near_epoch_end(target, per_epoch):
            return target


def _near_epoch_end(step: int, per_epoch: int) -> bool:
    """Whether global `step` is one of its epoch's last 3 (epochs of fewer than 6 steps have none)."""
    return per_epoch >= 6 and not 0 < (step - 1) % per_epoch + 1 < per_epoch - 2


def watch_training(
    process: subprocess.Popen, study: Path, sig: int, per_epoch: int, rng: random.Random
) -> tuple[bool, list[str], dict]:
    """Send `sig` when the trial being trained reaches a step drawn at random; check the files all along.

    Returns (whether the driver finished before the signal, the unparseable files seen, where the
    signal landed: the step log, the (epoch, step) last logged when it was sent and when training stopped).
    """
    started, wall_start, problems = time.monotonic(), time.time(), []
    log, target, last_check, landing = None, None, 0.0, {}
    while process.poll() is None:
        logs = step_logs(wall_start)
        if logs and logs[0] != log:  # a trial started (or the next one): a new random step
            log, here = logs[0], last_step(logs[0])
            target = draw_target(here[1] if here else 0, per_epoch, rng)
        here = last_step(log) if log else None
        if here and here[1] >= target and _near_epoch_end(here[1], per_epoch):
            # Seen too late (a fast trial outran the polling): the epoch ends before a signal could
            # land inside it, so the signal goes to a step drawn from here on instead.
            target = draw_target(here[1], per_epoch, rng)
        elif here and here[1] >= target:
            os.killpg(process.pid, sig)  # the whole process group: as Ctrl+C, or as the machine dying
            landing = {"log": log, "at_signal": here, "after_s": time.monotonic() - started}
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:  # not a file problem: said where the signal's landing is printed
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                landing["hung"] = True
            landing["exit_s"] = time.monotonic() - started - landing["after_s"]
            landing["stopped"] = settled(log)
            break
        if time.monotonic() - last_check >= POLL_S and study.exists():
            problems += unreadable_files(study)
            last_check = time.monotonic()
        time.sleep(0.1)
    if study.exists():
        problems += unreadable_files(study)
    return not landing and process.returncode == 0, problems, landing


def settled(log: Path, *, quiet_s: float = 3.0, limit_s: float = 60.0) -> tuple[int, int] | None:
    """The log's last step once it stopped growing: the trial's worker can outlive its driver a moment
    (Tune stops it after a SIGINT; Ray reaps a killed driver's workers within seconds)."""
    deadline, size, quiet_since = time.monotonic() + limit_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = log.stat().st_size if log.exists() else 0
        if now != size:
            size, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
        time.sleep(0.5)
    return last_step(log)


def describe(sig: int, landing: dict, per_epoch: int) -> tuple[str, bool, bool]:
    """Where a signal landed, in words; whether it was sent inside an epoch; whether training stopped inside one."""
    name = signal.Signals(sig).name
    if not landing:
        return f"{name}: not sent, the driver ended before it", False, False

    def inside(here: tuple[int, int] | None) -> bool:
        return here is not None and 0 < here[1] - (here[0] - 1) * per_epoch < per_epoch

    def position(here: tuple[int, int] | None) -> str:
        if here is None:
            return "no step yet"
        epoch, step = here
        return f"epoch {epoch} step {step - (epoch - 1) * per_epoch}/{per_epoch} (global step {step})"

    sent, stopped = inside(landing["at_signal"]), inside(landing["stopped"])
    text = (
        f"{name} {landing['after_s']:.0f} s into the driver, at {position(landing['at_signal'])}"
        f"{'' if sent else ' (NOT inside an epoch)'}; driver gone {landing['exit_s']:.0f} s later"
        f"{' (did NOT stop within 120 s: killed)' if landing.get('hung') else ''}; "
        f"training stopped at {position(landing['stopped'])}{'' if stopped else ' (the epoch end)'}; "
        f"{landing['log'].parent.name}"
    )
    return text, sent, stopped


def steps_per_epoch(study: Path) -> int:
    """From the uninterrupted study's reports: its total steps over its epochs."""
    for result in study.glob("*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if not r.get("mid_epoch") and r.get("epoch")]
        if rows:
            return rows[-1]["global_step"] // rows[-1]["epoch"]
    raise RuntimeError(f"no epoch reported in {study}")


def run_to_end(argv: list[str] | Callable[[], list[str]], study: Path, log: Path, *, attempts: int = 3) -> tuple[bool, list[str]]:
    """A driver run to its end; started again when Ray itself did not start (a loaded machine)."""
    problems: list[str] = []
    for _ in range(attempts):
        seen_before = log.stat().st_size if log.exists() else 0
        finished, seen = watch(driver(argv() if callable(argv) else argv, log), study)
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
    parser.add_argument(
        "--epochs",
        type=int,
        help="training epochs per trial (default 6, twice the smoke grid's 3: a SIGINT lets the trial finish its "
        "epoch, so 10 interruptions need more than 2 x 3 epochs; --quick: 3)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random moments")
    parser.add_argument("--dir", type=Path, help="where to keep the studies and logs (default: a temp dir)")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (3 if args.quick else 6)
    signals = [signal.SIGKILL] if args.quick else [signal.SIGINT] * args.sigint + [signal.SIGKILL] * args.sigkill
    rng = random.Random(args.seed)
    rng.shuffle(signals)
    root = args.dir or Path(tempfile.mkdtemp(prefix="soak-"))
    root.mkdir(parents=True, exist_ok=True)
    storage, log = root / "studies", root / "drivers.log"
    optimizers = args.optimizers or (["lion"] if args.quick else None)
    config = study_config(root / "soak.yaml", models=args.models, optimizers=optimizers, epochs=args.epochs)

    # Short paths in /tmp: Ray's sockets live there, and a socket path has at most 107 characters.
    RAY_DIR["root"] = Path(tempfile.mkdtemp(prefix="sk-", dir="/tmp"))
    head = start_cluster(RAY_DIR["root"]) if args.cluster else None
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
    if not finished:
        print(f"the uninterrupted run failed; see {log}")
        return 1
    per_epoch = steps_per_epoch(storage / "reference")
    print(f"uninterrupted run: {duration:.0f} s ({per_epoch} steps an epoch)", flush=True)

    soaked = storage / "soaked"
    inside, stopped_inside, sent, hung = 0, 0, 0, 0
    for sig in signals:
        process = driver(_start_or_resume(common, soaked), log)
        done, seen, landing = watch_training(process, soaked, sig, per_epoch, rng)
        problems += seen
        text, mid, stopped_mid = describe(sig, landing, per_epoch)
        if not landing:
            text += f" (exit code {process.returncode}{': the study is finished' if done else f'; see {log}'})"
        sent += bool(landing)
        inside += mid
        stopped_inside += stopped_mid
        hung += bool(landing.get("hung"))
        print(f"  {text}", flush=True)
        if done:
            break
    finished, seen = run_to_end(lambda: _start_or_resume(common, soaked), soaked, log)
    problems += seen
    print(
        f"interruptions: {sent} signals, {inside} of them sent while a trial trained inside an epoch; "
        f"training stopped inside the epoch after {stopped_inside}; drivers that did not stop within 120 s: {hung}"
    )
    if not finished:
        print(f"the resumed run did not finish; see {log}")
        return 1
    diffs = differences(comparable(storage / "reference" / "results.json"), comparable(soaked / "results.json"))
    problems = sorted(set(problems))
    in_study = [p for p in problems if "/" not in p.split(":", 1)[0]]  # paths relative to the study
    in_trials = [p for p in problems if p not in in_study]
    print(f"results identical to the uninterrupted run: {'yes' if not diffs else 'NO'}")
    for line in diffs:
        print(f"  {line}")
    print(f"study results files unparseable at some moment: {len(in_study)}")
    print(f"trial files unparseable at some moment: {len(in_trials)}")
    for line in problems[:20]:
        print(f"  {line}")
    load = os.getloadavg()
    print(f"total: {time.monotonic() - started:.0f} s; load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"studies and driver logs in {root}")
    return 0 if not diffs and not problems and not hung and inside == sent == len(signals) else 1


if __name__ == "__main__":
    sys.exit(main())
