"""Log lines a trial process would send to the driver's console that tell the user nothing new.

- Ray Train's "Checkpoint successfully created at: ..." on every reported checkpoint (the study's
  progress line and final "best checkpoint" line say what matters).
- transformers' "Loading weights" progress bar (a second per load, twice per trial).
- transformers' LOAD REPORT when the only weights missing are the new classification head and the
  only unexpected ones are the checkpoint's pre-training heads: every reranker starts that way, and
  the study says so once (study/run.py's describe). Any other missing or mismatched key still prints.
"""

from __future__ import annotations

import logging
import os
import re
import sys

# The head a sequence-classification model adds on top of the encoder, per model family.
HEAD_PREFIXES = ("classifier.", "score.", "head.", "pre_classifier.")
_ROW = re.compile(r"^\s*\|?\s*([\w.\-{}\[\],* ]+?)\s*\|\s*(?:\x1b\[[0-9;]*m)*([A-Z_]+)")


class ExpectedHeadReport(logging.Filter):
    """Drops a LOAD REPORT whose rows are all a new head (MISSING) or unused pre-training weights (UNEXPECTED)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [m.groups() for m in map(_ROW.match, message.splitlines()) if m and m.group(2) != "STATUS"]
        rows = [(key, status) for key, status in rows if key.lower() != "key"]
        if not rows:
            return True
        expected = all(
            status == "UNEXPECTED" or (status == "MISSING" and key.startswith(HEAD_PREFIXES)) for key, status in rows
        )
        return not expected


def quiet_trial_logs() -> None:
    """Call once in each trial process, before loading a model."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when transformers is imported
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    modeling = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, ExpectedHeadReport) for f in modeling.filters):
        modeling.addFilter(ExpectedHeadReport())
