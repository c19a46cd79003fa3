"""`python -m study.export STUDY_DIR [--trial T] --out DIR`: the best model in hand.

Finds a study's best kept checkpoint (by the study's primary metric: nDCG@10 on its first
evaluation set, the test set for a grid; the validation set for a search's pair directory) or the
best of one trial, and writes a Hugging Face model folder: the weights, config and tokenizer that
`AutoModelForSequenceClassification.from_pretrained(DIR)` loads, `training_config.json` (the
trial's resolved spec) and a model card (README.md) with the metrics table, the training settings,
the data and the command that produced the study. `--push-to-hub REPO` then uploads the folder
where a Hugging Face token is set.

Only argparse and the standard library are imported at start-up; nothing here needs torch or Ray.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from study import results
from study.cli_errors import print_bad_input

PRIMARY_METRIC = "nDCG@10"  # eval.measures.PRIMARY_METRIC, without importing the evaluation stack
STUDY_SPEC = "study_spec.json"
SEARCH_SPEC = "search_spec.json"
MANIFEST = "manifest.json"
# Files of a checkpoint that belong to resuming training, not to the model.
TRAINING_ONLY = {"training_state.pt", "trial_spec.json"}


@dataclass(frozen=True)
class BestCheckpoint:
    trial: results.TrialResult
    epoch: int
    value: float
    metric: str
    path: Path  # the checkpoint directory (a Hugging Face folder plus the training state)

    def load_hint(self) -> str:
        remote = ", trust_remote_code=True" if _trial_spec(self.trial).get("model", {}).get("trust_remote_code") else ""
        return f'AutoModelForSequenceClassification.from_pretrained("{self.path}"{remote})'


def primary_metric(study_dir: Path) -> str:
    """The metric that ranks the study's checkpoints, read from the spec saved beside the trials."""
    study_dir = Path(study_dir)
    if (study_dir / STUDY_SPEC).is_file():
        spec = json.loads((study_dir / STUDY_SPEC).read_text())
        return f"{spec['trials'][0]['evaluation'][0]['name']}/{PRIMARY_METRIC}"
    if (study_dir.parent / SEARCH_SPEC).is_file():  # one model x optimizer pair of a search: validation
        spec = json.loads((study_dir.parent / SEARCH_SPEC).read_text())
        return f"{spec['validation_set']}/{spec.get('metric', PRIMARY_METRIC)}"
    raise ValueError(
        f"{study_dir} holds no {STUDY_SPEC}: give a study directory (python -m study.run prints it), "
        f"or one model x optimizer directory of a search"
    )


def checkpoint_dir(trial: results.TrialResult, epoch: int) -> Path | None:
    """The kept checkpoint of that epoch, if Tune kept it (it keeps the best and the last)."""
    for row in trial.rows:
        name = row.get("checkpoint_dir_name")
        if row["epoch"] == epoch and name and (Path(trial.trial_dir) / name).is_dir():
            return Path(trial.trial_dir) / name
    return None


def best_checkpoint(study_dir: Path, *, trial: str | None = None, metric: str | None = None) -> BestCheckpoint:
    """The kept checkpoint with the highest `metric` (default: the study's primary metric), over
    every trial or only the trial named `trial` (its name, e.g. minilm-lion, or its directory)."""
    metric = metric or primary_metric(study_dir)
    trials = results.load_trials(Path(study_dir))
    if trial is not None:
        chosen = [t for t in trials if trial in (t.name, Path(t.trial_dir).name)]
        if not chosen:
            names = ", ".join(sorted({t.name for t in trials})) or "none"
            raise ValueError(f"--trial {trial!r} is not a trial of {study_dir}; its trials: {names}")
        trials = chosen
    candidates = []
    for t in trials:
        for row in t.rows:
            value, path = row.get(metric), checkpoint_dir(t, row["epoch"])
            if isinstance(value, (int, float)) and math.isfinite(value) and path is not None:
                candidates.append((float(value), -row["epoch"], t.name, t, row["epoch"], path))
    if not candidates:
        raise ValueError(f"{study_dir} has no kept checkpoint with a {metric} result yet (has a trial finished an epoch?)")
    value, _, _, best, epoch, path = max(candidates, key=lambda c: c[:3])
    return BestCheckpoint(best, epoch, value, metric, path)


def best_checkpoint_lines(study_dir: Path) -> list[str]:
    """What the study's console ends with: the best checkpoint, and how to load or export it."""
    try:
        best = best_checkpoint(study_dir)
    except ValueError as err:
        return [f"Best checkpoint: none ({err})"]
    return [
        f"Best checkpoint by {best.metric}: {best.trial.name}, epoch {best.epoch} ({best.value:.4f})",
        f"  {best.path}",
        f"  load it: {best.load_hint()}",
        f"  export it with a model card: python -m study.export {study_dir} --out DIR",
    ]


def export(study_dir: Path, out: Path, *, trial: str | None = None) -> BestCheckpoint:
    """Write the best checkpoint (of the study, or of `trial`) to `out` as a Hugging Face folder with a model card."""
    study_dir = Path(study_dir)
    best = best_checkpoint(study_dir, trial=trial)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} exists and is not empty: choose a new directory")
    out.mkdir(parents=True, exist_ok=True)
    for item in best.path.iterdir():
        if item.name in TRAINING_ONLY:
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, out / item.name)
    (out / "training_config.json").write_text(json.dumps(_trial_spec(best.trial), indent=2))
    (out / "README.md").write_text(model_card(study_dir, best))
    return best


def model_card(study_dir: Path, best: BestCheckpoint) -> str:
    spec = _trial_spec(best.trial)
    model, optimizer, schedule, training = spec["model"], spec["optimizer"], spec["schedule"], spec["training"]
    manifest = _manifest(study_dir)
    base = model.get("stand_in_for") or model["checkpoint"]
    hub_base = not model["checkpoint"].startswith(("standin:", "pkg:")) and "/" in model["checkpoint"]
    front = ["---", "library_name: transformers", "pipeline_tag: text-classification"]
    front += ["tags:", "- cross-encoder", "- reranker", "- text-ranking"]
    front += [f"base_model: {model['checkpoint']}"] if hub_base else []
    front += ["---", ""]
    lines = [
        f"# {best.trial.name}: a cross-encoder reranker from study `{study_dir.name}`",
        "",
        (
            f"Fine-tuned from `{model['checkpoint']}` with {optimizer['name']} (epoch {best.epoch} of "
            f"{training['epochs']}), chosen as the best kept checkpoint by {best.metric} = {best.value:.4f}."
        ),
        "",
    ]
    caveats = _caveats(spec, model)
    if caveats:
        lines += ["**Caveats.** " + " ".join(caveats), ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        'model = AutoModelForSequenceClassification.from_pretrained("THIS_FOLDER"'
        + (", trust_remote_code=True)" if model.get("trust_remote_code") else ")"),
        'batch = tokenizer(["a query"] * 2, ["a relevant passage", "another passage"], padding=True, truncation=True, return_tensors="pt")',
        "scores = model(**batch).logits.squeeze(-1)  # higher = more relevant",
        "```",
        "",
        "## Evaluation",
        "",
        "Every epoch of this trial (epoch 0 = before fine-tuning); the exported one is marked with ◀.",
        "",
        *_metrics_table(best, spec),
        "",
        "## Training settings",
        "",
        f"- model: `{model['checkpoint']}`" + (f" (a stand-in for `{base}`)" if model.get("stand_in_for") else ""),
        (
            f"- optimizer: {optimizer['name']}, lr {optimizer['lr']:g}, betas {tuple(optimizer.get('betas', ()))}, "
            f"weight decay {optimizer.get('weight_decay')}"
        ),
        f"- schedule: {schedule['name']}, {schedule['warmup_steps']} warm-up steps",
        (
            f"- epochs {training['epochs']}, batch size {training['batch_size']}, max length {model['max_length']}, "
            f"precision {training.get('precision')}, gradient clipping {training.get('grad_clip')}, "
            f"seed {training['seed']}"
        ),
        "- everything else: `training_config.json`",
        "",
        "## Data",
        "",
        f"- training: {_describe_data(training['data'])}",
        *[f"- evaluation `{e['name']}`" + (f" (depth {e['depth']})" if e.get("depth") else "") for e in spec["evaluation"]],
        "",
        "## How it was made",
        "",
        "```",
        manifest.get("command") or f"python -m study.run --config {study_dir / STUDY_SPEC}",
        "```",
        "",
    ]
    if manifest:
        versions = ", ".join(f"{k} {v}" for k, v in manifest.get("packages", {}).items())
        git = manifest.get("git", {})
        lines += [f"Packages: {versions}.", f"Project commit: {git.get('commit', 'unknown')}{' (dirty tree)' if git.get('dirty') else ''}.", ""]
    return "\n".join(front + lines)


def _caveats(spec: dict, model: dict) -> list[str]:
    notes = []
    if model.get("stand_in_for"):
        notes.append(
            f"`{model['checkpoint']}` is a tiny stand-in for `{model['stand_in_for']}`, built to test the pipeline; "
            "it is not a useful reranker."
        )
    if spec.get("scale") in ("smoke", "demo"):
        notes.append(
            f"Trained at {spec['scale']} scale on the built-in generated collection: the numbers below say the "
            "pipeline works, not how well the model ranks real queries."
        )
    return notes


def _metrics_table(best: BestCheckpoint, spec: dict) -> list[str]:
    columns = results.table_columns(spec["evaluation"])
    header = ["Epoch", *[c.header + (f" ({c.eval_set})" if f"({c.eval_set})" not in c.header else "") for c in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in best.trial.rows:
        cells = [f"{row['epoch']}" + (" ◀" if row["epoch"] == best.epoch else "")]
        cells += [f"{row[c.key]:.4f}" if isinstance(row.get(c.key), (int, float)) else "" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _describe_data(data: dict) -> str:
    shown = {k: v for k, v in data.items() if v is not None}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


def _trial_spec(trial: results.TrialResult) -> dict:
    return json.loads((Path(trial.trial_dir) / "params.json").read_text())["trial"]


def _manifest(study_dir: Path) -> dict:
    for directory in (study_dir, study_dir.parent):
        if (directory / MANIFEST).is_file():
            return json.loads((directory / MANIFEST).read_text())
    return {}


def push_to_hub(folder: Path, repo: str) -> str:
    """Upload the exported folder; needs a Hugging Face token (HF_TOKEN or `hf auth login`)."""
    from huggingface_hub import HfApi, get_token

    if not get_token():
        raise ValueError(
            f"--push-to-hub {repo} needs a Hugging Face token: set HF_TOKEN or run `hf auth login`; "
            f"the folder is written at {folder} and can be pushed later"
        )
    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    return str(api.upload_folder(folder_path=str(folder), repo_id=repo))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.export",
        description="Write a study's best checkpoint as a Hugging Face model folder with a model card.",
        epilog="Example: python -m study.export studies/thesis-demo-20260101 --out minilm-reranker",
    )
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study directory (or one pair's directory of a search)")
    parser.add_argument("--trial", help="export this trial's best checkpoint (e.g. minilm-lion) instead of the study's")
    parser.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) directory for the model folder")
    parser.add_argument("--push-to-hub", metavar="REPO", help="then upload the folder to this Hugging Face repository")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not Path(args.study_dir).is_dir():
            raise ValueError(f"STUDY_DIR {args.study_dir} is not a directory: give the directory python -m study.run printed")
        best = export(Path(args.study_dir), Path(args.out), trial=args.trial)
        print(f"Exported {best.trial.name}, epoch {best.epoch} ({best.metric} = {best.value:.4f}) to {args.out}")
        if args.push_to_hub:
            print(f"Pushed: {push_to_hub(Path(args.out), args.push_to_hub)}")
    except ValueError as err:
        return print_bad_input(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
