"""A trial that asks for a GPU runs on one, or stops at once saying why.

`torch.cuda.is_available()` only returns False (with at most a warning) when the driver is older
than the CUDA the wheel was built for, when the wheel is a CPU build, or when the process sees no
device; a trial that then trained on the CPU would hold a paid GPU idle for days. The error names
the cause: the wheel's CUDA version, the devices this process sees, and CUDA's own message.
"""

from __future__ import annotations

import os


class CudaUnavailableError(RuntimeError):
    """The trial asked for a GPU, but CUDA cannot be used in this process."""


def require_cuda(gpus: float) -> None:
    """Raise CudaUnavailableError unless CUDA works here (for a trial with `gpus` > 0)."""
    import torch

    if torch.cuda.is_available():
        return
    raise CudaUnavailableError(cuda_problem(gpus))


def cuda_problem(gpus: float) -> str:
    """Why CUDA is unusable in this process, in one paragraph that says what to check."""
    import torch

    built_for = torch.version.cuda
    try:
        torch.cuda.init()  # raises with the driver's own words (e.g. "The NVIDIA driver on your system is too old")
        cause = f"CUDA initialised but reports {torch.cuda.device_count()} devices"
    except Exception as err:  # noqa: BLE001 -- any failure here is the cause we report
        cause = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else err!r}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    wheel = f"this torch {torch.__version__} is built for CUDA {built_for}" if built_for else (
        f"this torch {torch.__version__} is a CPU-only build (torch.version.cuda is None): install a CUDA build"
    )
    return (
        f"the trial asks for {gpus:g} GPU, but torch.cuda.is_available() is False, so it would train on "
        f"the CPU; it stops instead. {wheel}; CUDA_VISIBLE_DEVICES={visible!r}; {cause}. Check `nvidia-smi` "
        "(the driver must support that CUDA version), or give the trial resources.gpus: 0 to train on the CPU."
    )
