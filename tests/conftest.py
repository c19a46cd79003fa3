"""Shared fixtures. Ray starts at most once per test session (it takes seconds)."""

from __future__ import annotations

import os
import tempfile

import pytest

# Models come from the installed packages or are built from configs: never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# A ray:// client gets its own server process, which must answer within this many seconds; Ray's
# 30 s default was once too short on a loaded 2-core CI machine (inherited by test-started nodes).
os.environ.setdefault("RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S", "120")
# A fresh tokenization cache per test session (set before Ray starts, so trials inherit it).
os.environ["STUDY_CACHE_DIR"] = tempfile.mkdtemp(prefix="study-cache-")
# Where tests arm injected faults for trial processes (trainables/reranker.py), also before Ray starts.
os.environ["STUDY_TEST_FAULTS"] = tempfile.mkdtemp(prefix="study-faults-")


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray instance (2 CPUs), shared by every test that needs one."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def smoke_study():
    """The thesis grid at smoke scale, as the CLI would resolve it."""
    from study.grids import build_study

    return build_study("thesis", scale="smoke", name="smoke-test")
