"""Deterministic operations, as the thesis asks (§4.4.2: "Deterministic CUDA operations where possible").

`training.deterministic: true` (the default) makes a trial's run repeat itself on the same machine and
software: torch picks deterministic kernels where it has them (`use_deterministic_algorithms`, with
`warn_only`: an op that has none warns and runs, the "where possible"), cuBLAS gets a fixed
workspace (CUBLAS_WORKSPACE_CONFIG, which its deterministic mode needs; set before the trial's first
CUDA call) and cuDNN neither autotunes nor picks non-deterministic algorithms. What it costs: on a
CPU nothing measurable (the CPU kernels this project runs are deterministic already); on a GPU
deterministic kernels (scatter/index_add in padding-free batches, attention backward) can be slower,
which `false` trades back. The setting is per process, so it is set both ways at every trial's start.
"""

from __future__ import annotations

import os

# cuBLAS's documented setting for reproducible results (":16:8" uses less memory, may be slower).
CUBLAS_WORKSPACE = ":4096:8"


def set_deterministic(on: bool) -> None:
    """Turn torch's deterministic algorithms (and cuDNN's) on or off for this process."""
    import torch

    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False  # the autotuner picks kernels by timing: a choice that varies by run


def is_deterministic() -> bool:
    import torch

    return torch.are_deterministic_algorithms_enabled() and bool(torch.backends.cudnn.deterministic)
