"""The thesis's optimizer study as data: 3 cross-encoders x {AdamW, Lion}, Tables 4.1 and 4.2.

Settings shared by all six trials: weight decay 0.01, 1000 warmup steps, gradient clipping 1.0,
batch size 16, 3 epochs, seed 12, bf16 on the GPU. AdamW: betas (0.9, 0.999), eps 1e-8.
Lion: betas (0.9, 0.99). Learning rate 2e-5 everywhere except ModernBERT + Lion (2e-6).

Where the thesis disagrees with itself, this grid follows the tables:
- §3.2.3 says "linear warmup for 10% of training steps"; Table 4.1 gives 1000 warmup steps. We use
  1000 (10% of 375k steps would be 37.5k).
- §3.2.3 gives Lion "cosine annealing for ModernBERT, linear for others"; Table 4.1 lists the
  scheduler as "None" for MiniLM and GTE and "Cosine Annealing" for ModernBERT, for both
  optimizers. We use constant after warmup for MiniLM and GTE, cosine for ModernBERT.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThesisModel:
    key: str  # short name used in tables and on the command line
    hf_id: str
    max_length: int
    schedule: str
    trust_remote_code: bool
    memory_gb: int  # §4.4.1: GPU memory the thesis reports for training it


MODELS: dict[str, ThesisModel] = {
    m.key: m
    for m in (
        ThesisModel("minilm", "microsoft/MiniLM-L12-H384-uncased", 512, "constant", False, 8),
        ThesisModel("gte", "Alibaba-NLP/gte-multilingual-base", 8192, "constant", True, 16),
        ThesisModel("modernbert", "answerdotai/ModernBERT-base", 8192, "cosine", False, 24),
    )
}

# (model, optimizer) -> learning rate (Table 4.1, §3.2.3).
LEARNING_RATES: dict[tuple[str, str], float] = {
    ("minilm", "adamw"): 2e-5,
    ("minilm", "lion"): 2e-5,
    ("gte", "adamw"): 2e-5,
    ("gte", "lion"): 2e-5,
    ("modernbert", "adamw"): 2e-5,
    ("modernbert", "lion"): 2e-6,
}

OPTIMIZERS: dict[str, dict] = {
    "adamw": {"name": "adamw", "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01},
    "lion": {"name": "lion", "betas": (0.9, 0.99), "weight_decay": 0.01},
}

TRAINING: dict = {
    "epochs": 3,
    "batch_size": 16,
    "seed": 12,
    "precision": "bf16-mixed",
    "grad_clip": 1.0,
}
WARMUP_STEPS = 1000
TRAIN_PAIRS = 2_000_000  # §3.2.3: "MS MARCO passage ranking triplets (2M query-passage pairs)"


def optimizer_settings(model: str, optimizer: str) -> dict:
    """The optimizer part of a trial spec for one cell of the grid."""
    return {**OPTIMIZERS[optimizer], "lr": LEARNING_RATES[(model, optimizer)]}
