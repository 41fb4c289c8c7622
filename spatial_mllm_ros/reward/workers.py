"""Process pool of `annotate --jobs N`: workers that die with the driver and share the cores between them.

Each worker holds a model (~450 MB); a driver killed by SIGKILL or the OOM killer runs no cleanup, so a
worker must notice on its own. Each of N workers also gets cores // N torch threads: N workers each
starting one thread per core make N = 2 on 2 cores several times slower than N = 1.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

# Read by OpenMP and MKL when torch loads them: set in the worker before its first `import torch`.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 0.5


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under taskset or a cgroup cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity outside Linux
        return os.cpu_count() or 1


def threads_per_worker(jobs: int) -> int:
    """Torch threads for each of `jobs` workers: the cores split evenly, at least one."""
    return max(1, available_cores() // max(1, jobs))


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs before its first task: the driver to outlive it and its thread share."""

    driver_pid: int
    threads: int


def watch_driver(driver_pid: int) -> None:
    """Exit this process once its parent is no longer `driver_pid` (polls: for where prctl is missing)."""
    while os.getppid() == driver_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _kill_me_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent ends; False where the kernel cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def die_with_driver(driver_pid: int) -> None:
    """End this process when its parent `driver_pid` ends, by any means, SIGKILL included.

    The kernel's signal where it has one, else a daemon thread polling the parent pid. The pid check
    after arming covers a driver that died before: then the signal would never come.
    """
    if not _kill_me_with_parent():
        threading.Thread(target=watch_driver, args=(driver_pid,), name="watch-driver", daemon=True).start()
    if os.getppid() != driver_pid:
        os._exit(1)


def init_worker(setup: WorkerSetup) -> None:
    """Pool initializer: tie the worker's life to the driver's, then cap its torch and OpenCV threads."""
    die_with_driver(setup.driver_pid)
    for name in THREAD_ENV:
        os.environ[name] = str(setup.threads)
    import cv2
    import torch

    torch.set_num_threads(setup.threads)
    cv2.setNumThreads(setup.threads)


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """Start `jobs` spawned workers (no fork: torch and the prefetch threads are not fork-safe).

    Create and shut it down in the same thread: on Linux a worker is killed when the thread that started
    it ends (PR_SET_PDEATHSIG follows the creating thread, not the process).
    """
    setup = WorkerSetup(driver_pid=os.getpid(), threads=threads_per_worker(jobs))
    return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=init_worker,
                               initargs=(setup,))
