"""Tune writes a local study directory through this filesystem, so that every file there is whole at every moment.

Ray 2.60's Tune copies its driver's staging directory (experiment_state-*.json, each trial's
result.json and progress.csv, the searcher's state) to the study's storage with
`pyarrow.fs.copy_files`, which rewrites each file in place: a report or comparison reading a running
study could catch one half-written, and a driver killed during the copy left one so -- a resumed
trial's result.json once came back holding only its later epochs. Checkpoints go the same way.

Handed to Tune as `RunConfig(storage_filesystem=...)`, this filesystem writes every file under a
temporary name beside it and renames it over the old one when it is closed, so a reader (or a
restore) sees the previous version or the new one. Tune also rewrites its staging files while its
background copy may be reading them; so a copy that caught one mid-write is not published: JSON
lines and CSV are published up to their last complete line, and any other `.json` only if it parses
(the next copy, a few seconds later, publishes the whole file; Tune's last copy waits for the
previous one, so the final state is always whole). Only local paths (and shared filesystems mounted
as one) go through here: an object store publishes an object only when it is closed.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow
import pyarrow.fs

TMP_SUFFIX = ".tmp"  # as trainables/artifacts.py: files with this suffix are never read as results
LINE_FILES = (".jsonl", ".csv")
LINE_FILE_NAMES = ("result.json",)  # Tune's per-trial results: one JSON document per line


def tune_storage(location: str) -> dict:
    """RunConfig's storage options for studies stored under `location` (also what Tuner.restore needs:
    its `storage_filesystem`). A local directory gets this module's filesystem; a URI (s3://, gs://,
    ...) the one Tune chooses for it."""
    from ray import tune

    # The trials copy their run files and step logs to the study themselves, at every report and
    # after a failure, only what changed (trainables/artifacts.py); Tune's copy comes only with
    # checkpoints and copies the whole working directory.
    options = {"storage_path": location, "storage_filesystem": None, "sync_config": tune.SyncConfig(sync_artifacts=False)}
    if "://" not in location:
        options.update(storage_path=str(Path(location).expanduser().resolve()), storage_filesystem=whole_file_filesystem())
    return options


def whole_file_filesystem() -> pyarrow.fs.FileSystem:
    return pyarrow.fs.PyFileSystem(WholeFileHandler())


def sweep_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files a killed writer left under `directory` (before a resume, when no
    writer of the study is running); returns them."""
    left = [p for p in Path(directory).rglob(f".*{TMP_SUFFIX}") if p.is_file()]
    for path in left:
        path.unlink(missing_ok=True)
    return left


def is_local(filesystem: pyarrow.fs.FileSystem) -> bool:
    """Whether `filesystem`'s paths are local paths (pyarrow's local filesystem or this module's)."""
    if isinstance(filesystem, pyarrow.fs.PyFileSystem):
        return isinstance(filesystem.handler, WholeFileHandler)
    return filesystem.type_name == "local"


def local_path(filesystem: pyarrow.fs.FileSystem, path: str) -> str | None:
    """`path` as a local path when it is one (a checkpoint is then read where it lies instead of being
    copied to a temporary directory first); else None."""
    return path if is_local(filesystem) else None


def _checked(name: str) -> bool:
    """Whether a file's content is checked before it is published (results files; not checkpoints,
    which would be read back whole for nothing)."""
    return name in LINE_FILE_NAMES or name.endswith((*LINE_FILES, ".json"))


def publishable(name: str, data: bytes) -> bytes | None:
    """What of a copied file may be published: line files up to their last newline, other JSON only
    when it parses whole (None: keep the previous version), anything else as it is."""
    if name in LINE_FILE_NAMES or name.endswith(LINE_FILES):
        return data[: data.rfind(b"\n") + 1]
    if name.endswith(".json"):
        try:
            json.loads(data)
        except ValueError:
            return None
    return data


class _WholeFileWriter:
    """A file object that collects what is written and, on close, renames it into place whole."""

    def __init__(self, path: str) -> None:
        directory, _, name = path.rpartition("/")
        self.path, self.name = path, name
        self.tmp = f"{directory}/.{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
        self._file = open(self.tmp, "wb")  # noqa: SIM115 -- closed in close()
        self.closed = False

    def write(self, data) -> int:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self._file.tell()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._file.close()
        try:
            if not _checked(self.name):
                os.replace(self.tmp, self.path)
                return
            data = Path(self.tmp).read_bytes()
            kept = publishable(self.name, data)
            if kept is None or (not kept and data and os.path.exists(self.path)):
                return  # caught mid-write: the previous version stays until the next copy
            if len(kept) != len(data):
                Path(self.tmp).write_bytes(kept)
            os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


class WholeFileHandler(pyarrow.fs.FileSystemHandler):
    """The local filesystem, except that output streams write a temporary file and rename it on close."""

    def __init__(self) -> None:
        self._local = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, WholeFileHandler)

    def __ne__(self, other) -> bool:
        return not self == other

    def __reduce__(self):  # pickled to every trial with Tune's storage context
        return WholeFileHandler, ()

    def get_type_name(self) -> str:
        return "whole-file-local"

    def normalize_path(self, path: str) -> str:
        return self._local.normalize_path(path)

    def get_file_info(self, paths):
        return self._local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self._local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the filesystem's root")

    def delete_file(self, path: str) -> None:
        self._local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self._local.open_input_stream(src) as source, self.open_output_stream(dest, None) as out:
            while chunk := source.read(1 << 24):
                out.write(chunk)

    def open_input_stream(self, path: str):
        return self._local.open_input_stream(path)

    def open_input_file(self, path: str):
        return self._local.open_input_file(path)

    def open_output_stream(self, path: str, metadata):
        return pyarrow.PythonFile(_WholeFileWriter(path), mode="w")

    def open_append_stream(self, path: str, metadata):
        return self._local.open_append_stream(path)
