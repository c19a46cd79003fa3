"""`python -m study.report A B`: two small study directories on disk (no Ray), compared side by side."""

from __future__ import annotations

import json
from pathlib import Path

from study.report import main

SET = "builtin-smoke-dl"


def _study(root: Path, name: str, ndcg: dict[str, float], *, seed: int = 12) -> Path:
    """A study directory as Tune leaves it: one minilm-lion trial evaluated at epochs 0 and 1."""
    evaluation = [{"name": SET, "table_metrics": ["nDCG@10"]}]
    trial = {
        "model": {"name": "minilm", "checkpoint": "standin:bert-tiny"},
        "optimizer": {"name": "lion"},
        "training": {"epochs": 1, "seed": seed},
        "evaluation": evaluation,
        "scale": "smoke",
    }
    study = root / name
    trial_dir = study / "minilm-lion-00000"
    (trial_dir / "per_query").mkdir(parents=True)
    (study / "study_spec.json").write_text(json.dumps({"name": name, "scale": "smoke", "trials": [trial]}))
    (trial_dir / "params.json").write_text(json.dumps({"trial": trial}))
    mean = sum(ndcg.values()) / len(ndcg)
    rows = [{"epoch": e, f"{SET}/nDCG@10": mean if e else 0.1, "global_step": 4 * e} for e in (0, 1)]
    (trial_dir / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (trial_dir / "per_query" / f"{SET}.epoch1.json").write_text(json.dumps({"nDCG@10": ndcg}))
    return study


def test_two_studies_side_by_side_with_paired_tests(tmp_path, capsys):
    queries = [f"q{i}" for i in range(12)]
    a = _study(tmp_path, "base", {q: 0.2 + 0.01 * i for i, q in enumerate(queries)})
    b = _study(tmp_path, "change", {q: 0.5 + 0.01 * i + 0.002 * (i % 3) for i, q in enumerate(queries)})
    assert main([str(a), str(b), "--resamples", "200", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert f"  A = base: scale smoke, 1 trials, seeds 12 ({a})" in out
    assert "Setting      Epoch  nDCG@10 A  nDCG@10 B" in out
    [row] = [line for line in out.splitlines() if line.startswith("B      minilm-lion")]
    assert "12  " in row and "+0.3" in row and row.rstrip().endswith("significant")  # every query gained 0.3
    assert "B vs A: 1 of 1 differences significant by both tests (B higher in 1, A higher in 0)" in out
    assert "Scale smoke: stand-in models on generated data" in out
    assert (tmp_path / "cmp" / "compare.md").read_text().count("minilm-lion") == 2


def test_studies_without_shared_queries_are_listed_but_not_tested(tmp_path, capsys):
    a = _study(tmp_path, "base", {"q1": 0.2, "q2": 0.3})
    b = _study(tmp_path, "other", {"x1": 0.5, "x2": 0.6})
    assert main([str(a), str(b)]) == 0
    assert "none: no setting was evaluated on the same queries in A and another study" in capsys.readouterr().out


def _seeded_study(root: Path, name: str, ndcg_by_seed: dict[int, dict[str, float]]) -> Path:
    """A study of one setting (minilm-lion) run with several seeds, each evaluated at epochs 0 and 1."""
    study = root / name
    trials = []
    for i, (seed, ndcg) in enumerate(ndcg_by_seed.items()):
        trial = {
            "model": {"name": "minilm", "checkpoint": "standin:bert-tiny"},
            "optimizer": {"name": "lion"},
            "training": {"epochs": 1, "seed": seed},
            "evaluation": [{"name": SET, "table_metrics": ["nDCG@10"]}],
            "scale": "smoke",
            "tag": f"s{seed}",
        }
        trials.append(trial)
        trial_dir = study / f"minilm-lion-s{seed}-0000{i}"
        (trial_dir / "per_query").mkdir(parents=True)
        (trial_dir / "params.json").write_text(json.dumps({"trial": trial}))
        rows = [{"epoch": e, f"{SET}/nDCG@10": sum(ndcg.values()) / len(ndcg) if e else 0.1} for e in (0, 1)]
        (trial_dir / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        (trial_dir / "per_query" / f"{SET}.epoch1.json").write_text(json.dumps({"nDCG@10": ndcg}))
    (study / "study_spec.json").write_text(json.dumps({"name": name, "scale": "smoke", "trials": trials}))
    return study


def test_studies_with_the_same_seeds_get_seed_means_and_an_interval_over_seeds(tmp_path, capsys):
    queries = [f"q{i}" for i in range(10)]
    base = {seed: {q: 0.3 + 0.02 * i + 0.01 * (seed - 12) for i, q in enumerate(queries)} for seed in (12, 13, 14)}
    # B gains 0.05, 0.10 and 0.15 per seed: mean 0.10, sd 0.05, so the 95% t-interval is 4.303 * 0.05 / sqrt(3)
    gains = {12: 0.05, 13: 0.10, 14: 0.15}
    change = {seed: {q: v + gains[seed] for q, v in values.items()} for seed, values in base.items()}
    a, b = _seeded_study(tmp_path, "random", base), _seeded_study(tmp_path, "bucketed", change)
    assert main([str(a), str(b), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    [seed_mean] = [line for line in out.splitlines() if "minilm-lion (seed mean)" in line]
    assert "+0.1000" in seed_mean and seed_mean.rstrip().endswith("significant")
    [interval] = [line for line in out.splitlines() if line.startswith("B      minilm-lion ") and "12,13,14" in line]
    # every query gained in every seed, yet three seeds this spread leave 0 inside the interval
    assert "+0.1000 ± 0.1242" in interval and interval.rstrip().endswith("no")
    # one seed in common: no interval to give, and no seed-mean test
    only_12 = _seeded_study(tmp_path, "one-seed", {12: change[12], 15: change[14]})
    assert main([str(a), str(only_12), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "seed mean" not in out and "Across seeds" not in out
