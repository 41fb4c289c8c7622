"""The annotator's writer thread: writes in order off the caller's thread, failures surface, nothing
outlives it."""

from __future__ import annotations

import threading
import time

import pytest

from spatial_mllm_ros.reward.errors import OutputError
from spatial_mllm_ros.reward.writer import OutputWriter


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "output-writer"]


def _fail(message: str) -> None:
    raise OSError(message)


def test_writes_run_in_order_on_another_thread() -> None:
    done: list[tuple[int, str]] = []
    with OutputWriter(depth=2) as writer:
        for i in range(10):
            writer.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    assert [i for i, _ in done] == list(range(10))
    assert {name for _, name in done} == {"output-writer"}
    assert not _writer_threads()


def test_a_failed_write_is_raised_at_close_and_the_rest_are_skipped() -> None:
    done: list[int] = []
    writer = OutputWriter()
    writer.submit(done.append, 1)
    writer.submit(_fail, "disk full")
    writer.submit(done.append, 2)
    with pytest.raises(OutputError, match="disk full") as info:
        writer.close()
    assert isinstance(info.value.__cause__, OSError)
    assert done == [1] and not _writer_threads()


def test_a_failed_write_is_raised_at_the_next_submit() -> None:
    writer = OutputWriter()
    writer.submit(_fail, "no space")
    deadline = time.monotonic() + 10
    with pytest.raises(OutputError, match="no space"):
        while time.monotonic() < deadline:
            writer.submit(time.sleep, 0.01)
    with pytest.raises(OutputError):
        writer.close()
    assert not _writer_threads()


def test_leaving_on_an_error_cancels_queued_writes_and_joins() -> None:
    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def slow() -> None:
        started.set()
        release.wait(10)

    with pytest.raises(RuntimeError, match="answering failed"), OutputWriter(depth=4) as writer:
        writer.submit(slow)
        writer.submit(done.append, 1)
        started.wait(10)
        threading.Timer(0.2, release.set).start()  # the slow write ends after the cancel
        raise RuntimeError("answering failed")
    assert done == [] and not _writer_threads()
    with pytest.raises(OutputError, match="closed"):
        writer.submit(done.append, 2)
