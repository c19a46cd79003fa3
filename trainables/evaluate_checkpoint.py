"""Evaluate a saved trial checkpoint on evaluation sets it was not selected on (e.g. the test sets).

The checkpoint is a Hugging Face model folder (trainables/checkpointing.py), so it loads like any
reranker; scoring, run files and metrics are the same code a trial uses after every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


from eval.evaluator import evaluate_reranker
from study.data import registry
from study.data.cache import cached_candidates
from study.spec import EvalSetSpec, TrialSpec
from trainables.models import load_cross_encoder, model_input_names
from trainables.quiet_logs import quiet_trial_logs
from trainables.trial import device_and_autocast


def evaluate_checkpoint(
    trial: TrialSpec,
    checkpoint: Path,
    eval_sets: Sequence[EvalSetSpec],
    *,
    out_dir: Path,
    run_tag: str,
    epoch: int,
) -> dict[str, float]:
    """Metrics keyed `<set>/<metric>`; writes `runs/<set>.epoch<N>.trec` and per-query values in out_dir."""
    quiet_trial_logs()  # it may run in the driver, whose console shows the search's progress line
    device, autocast_dtype = device_and_autocast(trial)

    saved = trial.model.model_copy(update={"checkpoint": str(checkpoint)})
    tokenizer, model = load_cross_encoder(saved, padding_free=trial.training.padding_free)
    model.to(device)
    with_types = "token_type_ids" in model_input_names(model)

    metrics: dict[str, float] = {}
    for eval_spec in eval_sets:
        pairs = cached_candidates(
            registry.load_eval_set(eval_spec),
            tokenizer,
            max_length=trial.model.max_length,
            with_token_type_ids=with_types,
            depth=eval_spec.depth,
        )
        metrics |= evaluate_reranker(
            model,
            pairs,
            epoch=epoch,
            out_dir=out_dir,
            run_tag=run_tag,
            batch_size=eval_spec.batch_size,
            device=device,
            autocast_dtype=autocast_dtype,
        )
    return metrics
