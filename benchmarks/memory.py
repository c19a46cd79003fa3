"""Peak memory of one phase of a benchmark: resident set size on the CPU, allocated memory on a GPU.

On Linux, writing "5" to /proc/self/clear_refs resets the process's peak RSS (VmHWM), so phases
run one after another in one process each get their own peak. Elsewhere the peak is the
process's lifetime maximum (getrusage), which the report says.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class PeakMemory:
    """Filled in when the `measure_peak` block ends."""

    rss_bytes: int = 0  # peak resident set size during the phase (whole process)
    rss_at_start_bytes: int = 0
    cuda_bytes: int | None = None  # peak torch.cuda allocated memory during the phase
    per_phase: bool = field(default=False)  # False: rss_bytes is the process's lifetime peak


@contextlib.contextmanager
def measure_peak(device_type: str = "cpu") -> Iterator[PeakMemory]:
    peak = PeakMemory(rss_at_start_bytes=_status_kib("VmRSS") * 1024)
    peak.per_phase = _reset_peak_rss()
    if device_type == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    try:
        yield peak
    finally:
        if device_type == "cuda":
            import torch

            torch.cuda.synchronize()
            peak.cuda_bytes = int(torch.cuda.max_memory_allocated())
        peak.rss_bytes = _status_kib("VmHWM") * 1024 if peak.per_phase else _lifetime_peak_rss()


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _status_kib(key: str) -> int:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return _lifetime_peak_rss() // 1024


def _lifetime_peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux
