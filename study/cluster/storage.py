"""Where a study lives: a local directory, or a URI (s3://, gs://, file://, ...) that every node reaches.

A multi-node Tune study needs storage every node can write to: a cloud bucket or a shared
filesystem. Tune reaches URIs through pyarrow.fs; so does this module, to read a study's small
files back (never its checkpoints) into a local mirror where study/results.py reads them, and to
put the result files next to them. Local paths keep working as plain directories.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SPEC_FILE = "study_spec.json"
EXPERIMENT_STATE = "experiment_state-*.json"  # Tune's saved run state, beside tuner.pkl
TUNER_FILE = "tuner.pkl"  # Tune's own state, written when the study starts running: what --resume restores
URI_CHECK_TIMEOUT_S = 20.0  # an unreachable bucket is reported after this long, not after Ray started


def is_uri(location: str) -> bool:
    return "://" in location


def join(location: str, *parts: str) -> str:
    """`location/part/...`, keeping a URI's query (`s3://b/x?region=eu-west-1`) at the end."""
    if not is_uri(location):
        return str(Path(location).expanduser().resolve().joinpath(*parts))
    split = urlsplit(location)
    path = "/".join([split.path.rstrip("/"), *parts])
    return urlunsplit(split._replace(path=path))


def study_location(storage: str, name: str) -> str:
    return join(storage, name)


def split_location(location: str) -> tuple[str, str]:
    """(storage, name) of a study location: its parent and its last component."""
    if not is_uri(location):
        path = Path(location).expanduser().resolve()
        return str(path.parent), path.name
    split = urlsplit(location)
    parent, _, name = split.path.rstrip("/").rpartition("/")
    return urlunsplit(split._replace(path=parent)), name


def write_text(location: str, text: str) -> None:
    """Write a file whole: locally through a temporary file and a rename, so no reader sees half of it."""
    if not is_uri(location):
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return
    filesystem, path = _filesystem(location)
    filesystem.create_dir(path.rpartition("/")[0], recursive=True)
    with filesystem.open_output_stream(path) as out:  # object stores publish an object only when it is closed
        out.write(text.encode())


def read_text(location: str) -> str:
    if not is_uri(location):
        return Path(location).read_text()
    filesystem, path = _filesystem(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode()


def exists(location: str) -> bool:
    if not is_uri(location):
        return Path(location).exists()
    import pyarrow.fs

    filesystem, path = _filesystem(location)
    return filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def has_tune_state(location: str) -> bool:
    """Whether Tune saved the experiment's state (what Tuner.restore needs besides tuner.pkl).

    A driver stopped between writing tuner.pkl and its first state save leaves only tuner.pkl, and
    Tuner.restore then fails inside Tune.
    """
    prefix = EXPERIMENT_STATE.split("*")[0]
    if not is_uri(location):
        return any(Path(location).glob(EXPERIMENT_STATE))
    import pyarrow.fs

    filesystem, path = _filesystem(location)
    found = filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    return any(Path(info.path).name.startswith(prefix) for info in found)


def can_resume(location: str) -> bool:
    """Whether the study at `location` holds what --resume restores: tuner.pkl and Tune's saved state."""
    return exists(join(location, TUNER_FILE)) and has_tune_state(location)


def remove_unstarted(location: str) -> bool:
    """Delete a study stopped before Tune saved its first state, if it holds only what is written before
    that (its spec, manifest and tuner.pkl): no trial of it ran. Returns whether it was deleted;
    a directory holding anything else is left alone."""
    import pyarrow.fs

    from study.tracking.manifest import MANIFEST_FILE

    if can_resume(location):
        return False
    before_tune = {SPEC_FILE, TUNER_FILE, MANIFEST_FILE}
    if not is_uri(location):
        directory = Path(location)
        if not directory.is_dir() or any(p.name not in before_tune for p in directory.iterdir()):
            return False
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
        return True
    filesystem, path = _filesystem(location)
    found = filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    if not found or any(Path(info.path).name not in before_tune for info in found):
        return False
    filesystem.delete_dir(path)
    return True


def mirror_study(location: str, local_dir: Path) -> Path:
    """Copy a study's files except checkpoints from `location` (a URI) into `local_dir`."""
    import pyarrow.fs

    filesystem, root = _filesystem(location)
    local_dir = Path(local_dir)
    for info in filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True)):
        relative = info.path[len(root) :].lstrip("/")
        if info.type != pyarrow.fs.FileType.File or _is_checkpoint(relative):
            continue
        target = local_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with filesystem.open_input_stream(info.path) as stream:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(stream.read())
            os.replace(tmp, target)
    return local_dir


def check_location(storage: str, name: str, *, resume: bool) -> None:
    """Before Ray starts: the storage is usable, and `<storage>/<name>` is new (or, to resume, a started study).

    Nothing is ever started over: an existing study is continued with --resume or left alone.
    """
    location = study_location(storage, name)
    if is_uri(storage):
        _check_uri(storage)
    else:
        _check_local_dir(Path(storage).expanduser())
    if resume:
        if not can_resume(location):
            raise ValueError(
                f"{location} holds a study spec but no Tune state ({TUNER_FILE} and {EXPERIMENT_STATE}): the "
                "study stopped before Tune saved its first state, so there is nothing to resume. Start it again "
                "under a new name with "
                f"--config {join(location, SPEC_FILE)} --name NEW_NAME (or delete {location})"
            )
    elif exists(join(location, SPEC_FILE)) or exists(join(location, TUNER_FILE)):
        raise ValueError(
            f"study {name} already exists in {storage}; continue it with --resume {location}, "
            "or choose another --name (a study is never started over)"
        )


def check_local_storage(storage: str, *, what: str) -> None:
    """For a study kept on this machine (the search): `storage` is a directory that can be written, not a URI."""
    if is_uri(storage):
        raise ValueError(
            f"{what} keeps its study in a local directory, but --storage is {urlsplit(storage).scheme}://...; "
            "give a directory (a shared filesystem's mount on a cluster)"
        )
    _check_local_dir(Path(storage).expanduser())


def _check_local_dir(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"--storage {directory} is a file, not a directory; give a directory for the studies")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"--storage {directory} cannot be written ({err.strerror or err}); give a directory you can write to"
        ) from None


def _check_uri(storage: str) -> None:
    """The URI's filesystem is known to pyarrow and answers within URI_CHECK_TIMEOUT_S."""
    import threading

    shown = urlunsplit(urlsplit(storage)._replace(query="", fragment=""))
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            filesystem, path = _filesystem(storage)
            filesystem.get_file_info(path)
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 -- reported below, in the caller's thread
            outcome.append(err)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(URI_CHECK_TIMEOUT_S)
    if not outcome:
        raise ValueError(
            f"--storage {shown} did not answer within {URI_CHECK_TIMEOUT_S:.0f} s; check the bucket's name, "
            "region and network, and the credentials in this environment"
        )
    err = outcome[0]
    if err is None:
        return
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "Unrecognized filesystem type" in reason or "not supported" in reason.lower():
        reason = f"unknown scheme {urlsplit(storage).scheme}:// (use a directory, s3://, gs://, hdfs:// or file://)"
    raise ValueError(f"--storage {shown} cannot be used: {reason}")


def load_study_spec(location: str):
    """The StudySpec saved in a study directory, pointed at where that directory is now."""
    from study.spec import StudySpec

    spec_location = join(location, SPEC_FILE)
    if not exists(spec_location):
        raise ValueError(f"{location} is not a study directory: it has no {SPEC_FILE}")
    spec = StudySpec.model_validate_json(read_text(spec_location))
    storage, name = split_location(location)
    return StudySpec.model_validate(spec.model_dump() | {"storage": storage, "name": name})


def _is_checkpoint(relative: str) -> bool:
    return any(part.startswith("checkpoint_") for part in relative.split("/")[:-1])


def _filesystem(location: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(location)
