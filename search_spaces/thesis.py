"""The thesis's optimizer study as data: 3 cross-encoders x {AdamW, Lion}, Tables 4.1 and 4.2.

Settings shared by all six trials: weight decay 0.01, 1000 warmup steps, gradient clipping 1.0,
batch size 16, 3 epochs, seed 12, bf16 on the GPU. AdamW: betas (0.9, 0.999), eps 1e-8.
Lion: betas (0.9, 0.99). Learning rate 2e-5 everywhere except ModernBERT + Lion (2e-6).

Where the thesis disagrees with itself:
- §3.2.3 says "linear warmup for 10% of training steps"; Table 4.1 gives 1000 warmup steps. We use
  1000 (10% of 375k steps would be 37.5k).
- Schedules after warmup. §3.2.3 gives Lion "Cosine Annealing for ModernBERT, linear for others";
  Table 4.1 lists the scheduler as "None" for MiniLM and GTE and "Cosine Annealing" for ModernBERT.
  The thesis trained with sentence-transformers' `CrossEncoder.fit`, whose defaults are exactly the
  thesis's other unstated values (lr 2e-5, weight decay 0.01, clipping 1.0) and whose default
  scheduler, when none is passed ("None"), is warmup then linear decay to 0 ("WarmupLinear").
  Table 4.1's ModernBERT column carries lr 2e-6, which is Lion's alone (§3.2.3 gives ModernBERT +
  AdamW 2e-5), so its "Cosine Annealing" describes ModernBERT + Lion. The `thesis` grid therefore
  runs linear decay for five trials and cosine for ModernBERT + Lion (SCHEDULES).
  The literal table reading (constant after warmup for MiniLM and GTE, cosine for both ModernBERT
  trials) is the `thesis-literal` grid (LITERAL_SCHEDULES), so both readings can be run and compared.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThesisModel:
    key: str  # short name used in tables and on the command line
    hf_id: str
    max_length: int
    trust_remote_code: bool
    memory_gb: int  # §4.4.1: GPU memory the thesis reports for training it
    parameters: int  # §4.1: the parameter count the thesis gives


MODELS: dict[str, ThesisModel] = {
    m.key: m
    for m in (
        ThesisModel("minilm", "microsoft/MiniLM-L12-H384-uncased", 512, False, 8, 33_000_000),
        ThesisModel("gte", "Alibaba-NLP/gte-multilingual-base", 8192, True, 16, 305_000_000),
        ThesisModel("modernbert", "answerdotai/ModernBERT-base", 8192, False, 24, 149_000_000),
    )
}

# (model, optimizer) -> schedule after warmup. `thesis`: §3.2.3 and the library's default (see above).
SCHEDULES: dict[tuple[str, str], str] = {
    ("minilm", "adamw"): "linear",
    ("minilm", "lion"): "linear",
    ("gte", "adamw"): "linear",
    ("gte", "lion"): "linear",
    ("modernbert", "adamw"): "linear",
    ("modernbert", "lion"): "cosine",
}
# `thesis-literal`: Table 4.1 read literally ("None" = constant; ModernBERT's cosine for both).
LITERAL_SCHEDULES: dict[tuple[str, str], str] = {
    ("minilm", "adamw"): "constant",
    ("minilm", "lion"): "constant",
    ("gte", "adamw"): "constant",
    ("gte", "lion"): "constant",
    ("modernbert", "adamw"): "cosine",
    ("modernbert", "lion"): "cosine",
}
GRID_SCHEDULES: dict[str, dict[tuple[str, str], str]] = {"thesis": SCHEDULES, "thesis-literal": LITERAL_SCHEDULES}

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
