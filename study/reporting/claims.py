"""The thesis's findings (§5.2, §6.1), each set against what this study measured, with a verdict.

Every verdict is computed from the study's results, never written in:
- supported: the study's difference points the thesis's way and is significant (both paired tests'
  Holm-adjusted p < ALPHA) and, with several seeds, the seeds' 95% interval excludes 0;
- contradicted: the same, the other way;
- not resolved: not significant either way (or one seed and one query set too few to say);
- not testable: the study lacks what the claim needs (a model, an optimizer, a trained epoch).
Optimizer claims per model use the significance section's comparisons at the last trained epoch
(query means over seeds where there are several); the ranking and training-dynamics claims get their
own paired tests here, Holm-corrected together. The 95% interval is over seeds (per-seed
differences; for the dynamics claims over model x seed pairs), so it needs two or more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from eval.measures import DISPLAY_NAMES
from study.reporting import significance
from study.reporting.dynamics import trial_dynamics
from study.reporting.stats import holm, mean_ci, paired_t_test, randomization_test
from study.reporting.study_data import StudyData, metric_value
from study.reporting.tables import Grid
from study.reporting.thesis_numbers import DEV, TEST

SUPPORTED, CONTRADICTED, UNRESOLVED, UNTESTABLE = "supported", "contradicted", "not resolved", "not testable"
LION, ADAMW = significance.CHALLENGER, significance.BASELINE


@dataclass(frozen=True)
class Finding:
    claim: str
    where: str  # the thesis's section
    evidence: str
    difference: float | None = None  # in the claim's direction's terms, as the evidence names it
    ci: float | None = None  # 95% half-width over seeds
    p: float | None = None  # the larger of the two tests' Holm-adjusted p-values
    verdict: str = UNTESTABLE
    seed_mean: float | None = None  # the mean of the per-seed differences the interval is about


def check_claims(
    study: StudyData, comparisons: list[significance.Comparison], *, n_resamples: int = 10_000
) -> list[Finding]:
    """Every claim of §5.2 and §6.1 that this study's design can speak to, in the thesis's order."""
    own: list[Finding] = [
        _best_setting(study, "modernbert", LION, "nDCG@10", n_resamples),
        _best_setting(study, "modernbert", LION, "AP", n_resamples),
    ]
    per_model = [
        _optimizer_claim(study, comparisons, "gte", ADAMW, TEST, "nDCG@10", "GTE: AdamW better than Lion", "§5.2.1"),
        _optimizer_claim(
            study, comparisons, "minilm", ADAMW, TEST, "nDCG@10", "MiniLM: AdamW better on TREC metrics", "§5.2.1"
        ),
        _optimizer_claim(study, comparisons, "minilm", ADAMW, TEST, "AP", "MiniLM: AdamW better on TREC metrics", "§5.2.1"),
        _optimizer_claim(study, comparisons, "minilm", LION, DEV, "RR@10", "MiniLM: Lion better", "§5.2.1"),
    ]
    own += [
        _dynamics_claim(
            study, "roughness", "Lion's evaluation loss is smoother", "mean absolute change of the held-out loss", n_resamples
        ),
        _dynamics_claim(
            study, "grad_norm_cv", "Lion's gradient norms are steadier", "gradient-norm CV per epoch", n_resamples
        ),
    ]
    own = _holm_over(own)
    findings = own[:2] + per_model + own[2:]
    findings.append(_no_universal_optimizer(study, comparisons))
    return findings


def claims_grid(findings: list[Finding], study: StudyData) -> Grid:
    grid = Grid(
        "The thesis's claims, checked",
        f"Each finding of §5.2 and §6.1 against this study (alpha {significance.ALPHA}, Holm-corrected)",
        ["Claim", "Thesis", "This study", "Δ", "95% CI (seeds)", "p (Holm)", "Verdict"],
    )
    if study.scale != "full":
        grid.notes.append(
            f"Scale `{study.scale}`: stand-in models on generated data. The verdicts say what these stand-ins did, "
            "not whether the thesis's models behave so; `--scale full` tests the claims themselves."
        )
    for f in findings:
        grid.rows.append(
            [
                f.claim,
                f.where,
                f.evidence,
                "-" if f.difference is None else f"{f.difference:+.4g}",
                "-" if f.ci is None or math.isnan(f.ci) else f"± {f.ci:.4g}",
                "-" if f.p is None else significance.format_p(f.p),
                f.verdict,
            ]
        )
        grid.csv_rows.append(vars(f).copy())
    return grid


def _verdict(difference: float, p: float | None, claimed_sign: int, *, seed_mean: float | None, ci: float | None) -> str:
    """Significant by the paired tests and, with several seeds, not undone by them: the seeds' 95%
    interval must exclude 0 too (a difference whose sign flips between seeds decides nothing)."""
    if p is None or math.isnan(p) or p >= significance.ALPHA:
        return UNRESOLVED
    if ci is not None and not math.isnan(ci) and seed_mean is not None and abs(seed_mean) <= ci:
        return UNRESOLVED
    return SUPPORTED if difference * claimed_sign > 0 else CONTRADICTED


def _metric_name(metric: str) -> str:
    return DISPLAY_NAMES.get(metric, metric)


def _best_setting(study: StudyData, model: str, optimizer: str, metric: str, n_resamples: int) -> Finding:
    """§5.2.1/§6.1.1: <model> + <optimizer> reaches the highest <metric> of all settings (any trained epoch)."""
    name = _metric_name(metric)
    claim = f"{model} + {optimizer} best on {name}"
    eval_set = study.eval_set(TEST)
    key = f"{eval_set}/{metric}"
    best: dict[tuple[str, str], tuple[float, int]] = {}  # setting -> (mean over seeds, epoch)
    for setting in dict.fromkeys((t.model, t.optimizer) for t in study.trials if not t.variant):
        trials = [t for t in study.trials if (t.model, t.optimizer) == setting and not t.variant]
        for epoch in sorted({r["epoch"] for t in trials for r in t.rows} - {0}):
            values = [v for t in trials for r in t.rows if r["epoch"] == epoch and (v := metric_value(r, key)) is not None]
            if values and (setting not in best or sum(values) / len(values) > best[setting][0]):
                best[setting] = (sum(values) / len(values), epoch)
    if (model, optimizer) not in best or len(best) < 2:
        return Finding(claim, "§5.2.1, §6.1.1", f"needs {model} + {optimizer} and another setting trained")
    ranked = sorted(best, key=lambda s: best[s][0], reverse=True)
    top = ranked[0]
    rival = ranked[1] if top == (model, optimizer) else top
    ours_runs = _runs(study, (model, optimizer), eval_set, best[(model, optimizer)][1], metric)
    rival_runs = _runs(study, rival, eval_set, best[rival][1], metric)
    seeds = sorted(set(ours_runs) & set(rival_runs))
    if not seeds:
        return Finding(claim, "§5.2.1, §6.1.1", "no per-query values for both settings")
    ours, theirs = (significance.query_means([runs[s] for s in seeds]) for runs in (ours_runs, rival_runs))
    queries = sorted(set(ours) & set(theirs))
    a, b = [ours[q] for q in queries], [theirs[q] for q in queries]
    difference = (sum(a) - sum(b)) / len(queries)
    per_seed = [_mean_over(ours_runs[s]) - _mean_over(rival_runs[s]) for s in seeds]
    p = max(
        paired_t_test(a, b) if len(queries) > 1 else math.nan,
        randomization_test(a, b, n_resamples=n_resamples),
    )
    leader = "it leads" if top == (model, optimizer) else f"{top[0]} + {top[1]} leads"
    evidence = (
        f"{leader}: {model} + {optimizer} {best[(model, optimizer)][0]:.4f} (epoch {best[(model, optimizer)][1]}) vs "
        f"{rival[0]} + {rival[1]} {best[rival][0]:.4f} (epoch {best[rival][1]}); Δ = {model} + {optimizer} minus it, "
        f"{len(queries)} queries"
    )
    seed_mean, ci = mean_ci(per_seed)
    return Finding(claim, "§5.2.1, §6.1.1", evidence, difference, ci, p, "pending", seed_mean)


def _optimizer_claim(study, comparisons, model, winner, role, metric, claim, where) -> Finding:
    """<winner> beats the other optimizer on <model>, <metric> (last trained epoch)."""
    claim = f"{claim} ({_metric_name(metric)})"
    eval_set = study.eval_set(role)
    mine = [c for c in comparisons if c.model == model and c.metric == metric and c.eval_set == eval_set]
    if not mine:
        return Finding(claim, where, f"needs {model} trained with both optimizers")
    epoch = max(c.epoch for c in mine)
    at_epoch = [c for c in mine if c.epoch == epoch]
    chosen = next((c for c in at_epoch if "query means" in c.seeds), at_epoch[0])
    sign = 1 if winner == LION else -1  # the comparisons' difference is Lion - AdamW
    per_seed = [
        _row_value(study, model, LION, seed, epoch, f"{eval_set}/{metric}")
        - _row_value(study, model, ADAMW, seed, epoch, f"{eval_set}/{metric}")
        for seed in study.seeds
        if None not in (_row_value(study, model, o, seed, epoch, f"{eval_set}/{metric}") for o in (LION, ADAMW))
    ]
    p = max(chosen.t_p_holm, chosen.randomization_p_holm)
    evidence = (
        f"epoch {epoch}, seeds {chosen.seeds}: AdamW {chosen.adamw:.4f}, Lion {chosen.lion:.4f}; Δ = Lion - AdamW, "
        f"{chosen.n_queries} queries"
    )
    seed_mean, ci = mean_ci(per_seed) if per_seed else (None, None)
    verdict = _verdict(chosen.difference, p, sign, seed_mean=seed_mean, ci=ci)
    return Finding(claim, where, evidence, chosen.difference, ci, p, verdict)


def _dynamics_claim(study: StudyData, field: str, claim: str, measure: str, n_resamples: int) -> Finding:
    """§5.2.2: Lion's <measure> is lower than AdamW's, paired by (model, seed)."""
    by_trial = {(t.model, t.optimizer, t.seed): getattr(trial_dynamics(t), field) for t in study.trials if not t.variant}
    pairs = [
        (v, by_trial[(m, ADAMW, s)])
        for (m, o, s), v in by_trial.items()
        if o == LION and v is not None and by_trial.get((m, ADAMW, s)) is not None
    ]
    if not pairs:
        return Finding(claim, "§5.2.2", f"needs the {measure} of both optimizers for one model and seed")
    lion, adamw = [p[0] for p in pairs], [p[1] for p in pairs]
    differences = [a - b for a, b in pairs]
    p = (
        max(paired_t_test(lion, adamw), randomization_test(lion, adamw, n_resamples=n_resamples))
        if len(pairs) > 1
        else math.nan
    )
    evidence = (
        f"{measure}: Lion {sum(lion) / len(lion):.4g}, AdamW {sum(adamw) / len(adamw):.4g} (mean over {len(pairs)} "
        f"model x seed pairs); Δ = Lion - AdamW"
    )
    mean, ci = mean_ci(differences)
    return Finding(claim, "§5.2.2", evidence, mean, ci, p, "pending", mean)


def _no_universal_optimizer(study: StudyData, comparisons) -> Finding:
    """§6.1.2: neither optimizer is better on every model (nDCG@10, last trained epoch per model)."""
    claim = "No universal optimizer"
    eval_set = study.eval_set(TEST)
    winners: dict[str, str] = {}
    for model in dict.fromkeys(c.model for c in comparisons):
        mine = [c for c in comparisons if c.model == model and c.metric == "nDCG@10" and c.eval_set == eval_set]
        if not mine:
            continue
        epoch = max(c.epoch for c in mine)
        at_epoch = [c for c in mine if c.epoch == epoch]
        chosen = next((c for c in at_epoch if "query means" in c.seeds), at_epoch[0])
        winners[model] = (
            ("Lion" if chosen.difference > 0 else "AdamW") if chosen.verdict == "significant" else "neither"
        )
    if len(winners) < 2:
        return Finding(claim, "§6.1.2", "needs two models trained with both optimizers")
    evidence = "nDCG@10 at the last epoch, significant winner per model: " + ", ".join(
        f"{m} {w}" for m, w in winners.items()
    )
    decided = set(winners.values()) - {"neither"}
    if decided == {"Lion", "AdamW"}:
        verdict = SUPPORTED
    elif len(decided) == 1 and "neither" not in winners.values():
        verdict = CONTRADICTED
    else:
        verdict = UNRESOLVED
    return Finding(claim, "§6.1.2", evidence, verdict=verdict)


def _holm_over(findings: list[Finding]) -> list[Finding]:
    """Holm-adjust this module's own p-values together and set their verdicts."""
    index = [i for i, f in enumerate(findings) if f.p is not None and not math.isnan(f.p)]
    adjusted = dict(zip(index, holm([findings[i].p for i in index]))) if index else {}
    out = []
    for i, f in enumerate(findings):
        if f.difference is None:
            out.append(f)
            continue
        p = adjusted.get(i, math.nan)
        # ranking claims: ours - rival > 0; dynamics claims: Lion - AdamW < 0
        sign = -1 if f.where == "§5.2.2" else 1
        verdict = _verdict(f.difference, p, sign, seed_mean=f.seed_mean, ci=f.ci)
        out.append(Finding(f.claim, f.where, f.evidence, f.difference, f.ci, p, verdict, f.seed_mean))
    return out


def _runs(study: StudyData, setting: tuple[str, str], eval_set: str, epoch: int, metric: str) -> dict[int, dict]:
    """seed -> per-query values of one setting at one epoch."""
    out = {}
    for t in study.trials:
        if (t.model, t.optimizer) == setting and not t.variant:
            values = significance.per_query_values(t.trial_dir, eval_set, epoch, metric)
            if values:
                out[t.seed] = values
    return out


def _mean_over(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)


def _row_value(study: StudyData, model: str, optimizer: str, seed: int, epoch: int, key: str) -> float | None:
    for t in study.trials:
        if (t.model, t.optimizer, t.seed) == (model, optimizer, seed) and not t.variant:
            return next((metric_value(r, key) for r in t.rows if r["epoch"] == epoch), None)
    return None
