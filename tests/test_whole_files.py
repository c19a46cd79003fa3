"""Tune writes a local study through study/cluster/whole_files.py: every file there is whole at every moment.

Tune's own copy (`pyarrow.fs.copy_files` onto pyarrow's local filesystem) rewrites each file in
place; these tests use the function Tune 2.60 uploads its staging directory with
(`ray.train._internal.storage._upload_to_fs_path`), so a change in Ray that bypasses the filesystem
shows here.
"""

from __future__ import annotations

import json
import pickle
import threading

import pyarrow.fs
import pytest
from ray.train._internal.storage import _upload_to_fs_path

from study.cluster.whole_files import (
    WholeFileHandler,
    is_local,
    local_path,
    publishable,
    sweep_temporaries,
    tune_storage,
    whole_file_filesystem,
)


@pytest.mark.parametrize("whole", [True, False])
def test_a_copy_cut_short_leaves_the_previous_file(tmp_path, whole):
    # A writer killed mid-copy: with pyarrow's local filesystem the file is already cut (what a
    # reader or a resume then reads), with the whole-file filesystem it is the previous version.
    target = tmp_path / "experiment_state-x.json"
    target.write_text('{"trials": 2}')
    filesystem = whole_file_filesystem() if whole else pyarrow.fs.LocalFileSystem()
    stream = filesystem.open_output_stream(str(target))
    stream.write(b'{"tri')
    stream.flush()
    seen = target.read_text()
    if whole:
        assert seen == '{"trials": 2}'
        stream.close()
        assert target.read_text() == '{"trials": 2}'  # the torn copy is not published either
    else:
        assert seen == '{"tri'  # what a killed writer leaves behind
        stream.close()


def test_tunes_upload_publishes_whole_lines_and_only_json_that_parses(tmp_path):
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    (staging / "trial-1").mkdir(parents=True)
    (staging / "trial-1" / "result.json").write_text('{"epoch": 0}\n{"epoch": 1}\n{"epo')  # caught mid-append
    (staging / "trial-1" / "progress.csv").write_text("epoch,loss\n0,0.69\n1,0.6")
    (staging / "experiment_state-x.json").write_text('{"trial_data": [')  # caught mid-rewrite
    (staging / "searcher-state.pkl").write_bytes(b"\x80\x04K\x01.")
    filesystem = whole_file_filesystem()

    _upload_to_fs_path(str(staging), filesystem, str(storage))

    rows = [json.loads(line) for line in (storage / "trial-1" / "result.json").read_text().splitlines()]
    assert rows == [{"epoch": 0}, {"epoch": 1}]
    assert (storage / "trial-1" / "progress.csv").read_text() == "epoch,loss\n0,0.69\n"
    assert not (storage / "experiment_state-x.json").exists()  # never published half
    assert (storage / "searcher-state.pkl").read_bytes() == b"\x80\x04K\x01."

    (staging / "experiment_state-x.json").write_text('{"trial_data": []}')
    _upload_to_fs_path(str(staging), filesystem, str(storage))
    assert json.loads((storage / "experiment_state-x.json").read_text()) == {"trial_data": []}
    assert [p.name for p in storage.rglob("*") if p.name.startswith(".")] == []  # no temporary left


def test_a_reader_never_sees_part_of_a_file_tune_rewrites(tmp_path):
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    staging.mkdir()
    rows = "".join(json.dumps({"epoch": i, "pad": "x" * 200}) + "\n" for i in range(4000))  # ~0.9 MB
    (staging / "result.json").write_text(rows)
    filesystem = whole_file_filesystem()
    _upload_to_fs_path(str(staging), filesystem, str(storage))
    stop, partial, reads = threading.Event(), [], [0]

    def read() -> None:
        while not stop.is_set():
            text = (storage / "result.json").read_text()
            reads[0] += 1
            if text != rows:
                partial.append(len(text))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(30):
            _upload_to_fs_path(str(staging), filesystem, str(storage))
    finally:
        stop.set()
        reader.join()
    assert reads[0] > 0 and partial == []


def test_the_filesystem_travels_to_trials_and_reads_like_the_local_one(tmp_path):
    filesystem = pickle.loads(pickle.dumps(whole_file_filesystem()))  # as Tune's storage context does
    assert isinstance(filesystem.handler, WholeFileHandler) and filesystem == whole_file_filesystem()
    assert is_local(filesystem) and is_local(pyarrow.fs.LocalFileSystem())
    assert local_path(filesystem, "/a/checkpoint_000001") == "/a/checkpoint_000001"
    assert local_path(pyarrow.fs.S3FileSystem(anonymous=True, region="us-east-1"), "b/c") is None
    (tmp_path / "a.bin").write_bytes(b"abc")
    filesystem.copy_file(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"))
    filesystem.move(str(tmp_path / "b.bin"), str(tmp_path / "c.bin"))
    assert (tmp_path / "c.bin").read_bytes() == b"abc" and not (tmp_path / "b.bin").exists()
    info = filesystem.get_file_info(pyarrow.fs.FileSelector(str(tmp_path)))
    assert sorted(i.base_name for i in info) == ["a.bin", "c.bin"]


def test_local_studies_get_it_and_uris_keep_tunes_own(tmp_path):
    local = tune_storage(str(tmp_path))
    assert local["storage_path"] == str(tmp_path.resolve()) and isinstance(local["storage_filesystem"].handler, WholeFileHandler)
    remote = tune_storage("s3://bucket/studies")
    assert (remote["storage_path"], remote["storage_filesystem"]) == ("s3://bucket/studies", None)
    assert not local["sync_config"].sync_artifacts and not remote["sync_config"].sync_artifacts  # trials copy their own files


def test_publishable_rules():
    assert publishable("result.json", b'{"a": 1}\n{"a"') == b'{"a": 1}\n'
    assert publishable("steps.jsonl", b"") == b""
    assert publishable("params.json", b'{"lr": 1e-5}') == b'{"lr": 1e-5}'
    assert publishable("params.json", b"") is None
    assert publishable("events.out.tfevents.1", b"\x00\x01") == b"\x00\x01"


def test_a_resume_sweeps_what_a_killed_writer_left(tmp_path):
    trial = tmp_path / "trial-1"
    trial.mkdir()
    (trial / "result.json").write_text("{}\n")
    (trial / ".result.json.123-abcdef01.tmp").write_text("{")
    assert [p.name for p in sweep_temporaries(tmp_path)] == [".result.json.123-abcdef01.tmp"]
    assert [p.name for p in trial.iterdir()] == ["result.json"]
