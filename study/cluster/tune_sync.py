"""Keep the study's own top-level files out of Tune's experiment-state uploads.

On a resume, Tune (2.60, `sync_down_experiment_state`) downloads every top-level .json and .pkl of
the study into its driver staging directory, and from then on uploads that directory back at each
state save, over the stored files, in place: a reader (a dashboard, `python -m study.report`, the
soak's checker) could then find study_spec.json or a manifest empty or half-written, though the
study itself wrote them whole. The study's own files need nothing from Tune, so they are taken out
of the staging directory before its first upload (Tune's first step after restoring).
"""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback

from study.cluster.storage import SPEC_FILE
from study.tracking.manifest import MANIFEST_FILE

# Written by the study (whole, once) beside Tune's state; results.json is rewritten by collect().
STUDY_FILES = (SPEC_FILE, MANIFEST_FILE, MANIFEST_FILE.replace(".json", ".resumed.json"), "results.json")


class StudyFilesOutOfTuneSync(Callback):
    """Removes STUDY_FILES from Tune's driver staging directory (never from the study's storage)."""

    def __init__(self) -> None:
        self._done = False

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self._done or not trials:
            return
        self._done = True
        # The staging directory is Tune's local copy (/tmp/ray/session_*/artifacts/...), never the study's storage.
        staging = Path(trials[0].storage.experiment_driver_staging_path)
        for name in STUDY_FILES:
            (staging / name).unlink(missing_ok=True)
