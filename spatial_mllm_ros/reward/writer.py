"""The annotator's outputs written off its hot path: one writer thread behind a bounded queue.

Plots, manifest records and reward-bag copies cost time the model could use; in a thread they overlap
the next episode's answering (torch releases the GIL in its kernels, file writes and PNG encoding in
theirs). The queue is bounded, so a slow disk holds the annotator back instead of piling up episodes in
memory. Writes run one at a time in submission order, so a bag's copy sees its episodes' records.

A failed write is raised in the annotator's thread, as OutputError, at its next submit or at close, and
the writes queued after it are skipped; close() (and leaving the `with` block) joins the thread, so
nothing the writer started outlives it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from spatial_mllm_ros.reward.errors import OutputError

log = logging.getLogger(__name__)

_STOP = object()


class OutputWriter:
    """Run submitted writes in order on one thread; surface the first failure to the caller."""

    def __init__(self, depth: int = 4) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._error: Exception | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._work, name="output-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._queue.get()) is not _STOP:
            if self._error is not None or self._cancelled.is_set():
                continue  # drained, not run: the queue must empty for close() to get through
            write, args = job
            try:
                write(*args)
            except Exception as exc:  # kept for the annotator's thread, which knows what to do with it
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise OutputError(
                f"writing outputs failed: {type(self._error).__name__}: {self._error}"
            ) from self._error

    def submit(self, write: Callable[..., object], *args: Any) -> None:
        """Queue write(*args); blocks while the queue is full, raises if an earlier write failed."""
        self._raise()
        if not self._thread.is_alive():
            raise OutputError("the output writer was closed")
        self._queue.put((write, args))

    def close(self, cancel: bool = False) -> None:
        """Finish the queued writes (cancel: skip them), join the thread, raise the first failure."""
        if cancel:
            self._cancelled.set()
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise()

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
            return
        try:  # already failing: stop writing; a write's error is logged, not put in the caller's place
            self.close(cancel=True)
        except OutputError as error:
            log.error("%s (while the annotator was failing: %s)", error, exc)
