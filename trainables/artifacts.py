"""A trial's files reach the study's storage whole: written there under a temporary name, then renamed.

The trial writes its run files, per-query metrics and step log into its working directory; this
module copies what changed to the trial's directory in the storage at every report. Tune could copy
them itself (`SyncConfig(sync_artifacts=True)`), but Tune's copy (`pyarrow.fs.copy_files`, Ray 2.60)
rewrites every file of the working directory in place at every checkpoint: a reader of a running
study (a report, a comparison) could catch a per-query file half-written, and a driver killed during
the copy could leave one so. Here a reader sees the old file or the new one, never a part: a rename
is atomic on a local or shared filesystem, and an object store publishes an object only when it is
closed (its move is a server-side copy of the whole object).
"""

from __future__ import annotations

import os
from pathlib import Path

TMP_SUFFIX = ".tmp"  # the project's own atomic writes leave such files for a moment: never copied
JSON_LINES = ".jsonl"  # appended line by line: only whole lines are copied


def write_whole(filesystem, path: str, data: bytes) -> None:
    """Write `path` on a pyarrow filesystem so that no reader ever sees part of it."""
    filesystem.create_dir(path.rpartition("/")[0], recursive=True)
    tmp = f"{path}.{os.getpid()}{TMP_SUFFIX}"
    with filesystem.open_output_stream(tmp) as out:
        out.write(data)
    filesystem.move(tmp, path)


class Publisher:
    """Copies the files of `local_dir` that changed since the last call to `fs_dir` on `filesystem`."""

    def __init__(self, local_dir: Path, filesystem, fs_dir: str) -> None:
        self.local_dir, self.filesystem, self.fs_dir = Path(local_dir), filesystem, fs_dir.rstrip("/")
        self._copied: dict[str, tuple[int, int]] = {}

    def publish(self) -> list[str]:
        """The relative paths copied this time."""
        copied = []
        for path in sorted(self.local_dir.rglob("*")):
            if path.name.endswith(TMP_SUFFIX):
                continue
            try:
                stat = path.stat()  # before reading: a file changed after this is copied next time
                if not path.is_file():
                    continue
                relative = path.relative_to(self.local_dir).as_posix()
                if self._copied.get(relative) == (stat.st_mtime_ns, stat.st_size):
                    continue
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # replaced by an atomic write between listing and reading: copied next time
            if path.suffix == JSON_LINES:
                data = data[: data.rfind(b"\n") + 1]
            write_whole(self.filesystem, f"{self.fs_dir}/{relative}", data)
            self._copied[relative] = (stat.st_mtime_ns, stat.st_size)
            copied.append(relative)
        return copied
