"""A trial's files reach the storage whole (trainables/artifacts.py): never half-written, at any moment."""

from __future__ import annotations

import json
import threading

import pyarrow.fs
import pytest

from trainables.artifacts import Publisher, write_whole


def _per_query(version: int) -> str:
    return json.dumps({f"q{i}": {"nDCG@10": version + i / 1e6} for i in range(20000)})  # about 0.8 MB


class _CutShort:
    """A local filesystem whose writes die halfway, as a process killed during a copy."""

    def __init__(self) -> None:
        self.local = pyarrow.fs.LocalFileSystem()

    def __getattr__(self, name):
        return getattr(self.local, name)

    def open_output_stream(self, path):
        stream = self.local.open_output_stream(path)

        class Half:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                stream.close()

            def write(self, data):
                stream.write(data[: len(data) // 2])
                raise OSError("killed")

        return Half()


def _in_place(filesystem, path: str, data: bytes) -> None:
    """How the trial's files reached the storage before (Tune's copy, the diverged marker): in place."""
    with filesystem.open_output_stream(path) as out:
        out.write(data)


@pytest.mark.parametrize("writer", [write_whole, _in_place])
def test_a_write_cut_short_leaves_the_stored_file_as_it_was(tmp_path, writer):
    stored = tmp_path / "per_query" / "dev.epoch1.json"
    stored.parent.mkdir()
    stored.write_text(_per_query(1))
    with pytest.raises(OSError, match="killed"):
        writer(_CutShort(), str(stored), _per_query(2).encode())
    if writer is _in_place:  # the control: what a reader found before
        with pytest.raises(json.JSONDecodeError):
            json.loads(stored.read_text())
    else:
        assert json.loads(stored.read_text()) == json.loads(_per_query(1))


def test_a_reader_never_sees_part_of_a_published_file(tmp_path):
    work, store = tmp_path / "work", tmp_path / "store"
    (work / "per_query").mkdir(parents=True)
    source, stored = work / "per_query" / "dev.epoch1.json", store / "per_query" / "dev.epoch1.json"
    source.write_text(_per_query(0))
    files = Publisher(work, pyarrow.fs.LocalFileSystem(), str(store))
    files.publish()
    seen, stop = [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            text = stored.read_text()
            try:
                seen.append(json.loads(text)["q0"]["nDCG@10"])
            except json.JSONDecodeError:
                seen.append(f"partial file of {len(text)} characters")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in range(1, 25):
            source.write_text(_per_query(version))
            files.publish()
    finally:
        stop.set()
        reader.join()
    assert seen and all(isinstance(value, float) for value in seen), [v for v in seen if not isinstance(v, float)][:3]
    assert json.loads(stored.read_text())["q0"]["nDCG@10"] == 24
    assert sorted(p.name for p in stored.parent.iterdir()) == ["dev.epoch1.json"]  # no temporary file left


def test_only_changed_files_are_copied_and_only_whole_lines_of_a_step_log(tmp_path):
    work, store = tmp_path / "work", tmp_path / "store"
    (work / "runs").mkdir(parents=True)
    (work / "runs" / "dev.epoch0.trec").write_text("1 Q0 d1 1 0.5 t\n")
    (work / "runs" / "dev.epoch1.trec.tmp").write_text("being written")
    (work / "steps.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"ste')
    files = Publisher(work, pyarrow.fs.LocalFileSystem(), str(store))
    assert files.publish() == ["runs/dev.epoch0.trec", "steps.jsonl"]
    assert (store / "steps.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
    assert not (store / "runs" / "dev.epoch1.trec.tmp").exists()
    with (work / "steps.jsonl").open("a") as log:
        log.write('p": 3}\n')
    assert files.publish() == ["steps.jsonl"]
    assert (store / "steps.jsonl").read_text().splitlines()[-1] == '{"step": 3}'
