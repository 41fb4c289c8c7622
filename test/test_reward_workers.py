"""The `annotate --jobs N` pool: real spawned workers share the cores and never outlive their driver."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from test_reward_support import running

from spatial_mllm_ros.reward.workers import THREAD_ENV, available_cores, threads_per_worker, worker_pool


def test_each_worker_gets_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    want = max(1, available_cores() // 2)
    for name in THREAD_ENV:  # what a worker would inherit: it must not keep it
        monkeypatch.setenv(name, str(want + 3))
    with worker_pool(2) as pool:
        threads = pool.submit(torch.get_num_threads).result(timeout=120)
        env = [pool.submit(os.getenv, name).result(timeout=60) for name in THREAD_ENV]
    assert threads == want
    assert env == [str(want)] * len(THREAD_ENV)
    assert threads_per_worker(1) == available_cores()
    assert threads_per_worker(available_cores() + 1) == 1


def test_a_worker_whose_driver_is_gone_exits(python_exe: str) -> None:
    # A driver that died before PR_SET_PDEATHSIG was armed sends no signal: the parent pid check must
    # catch it. Here the "driver" is a pid that is not this process's parent (its own).
    code = ("import os\nfrom spatial_mllm_ros.reward.workers import die_with_driver\n"
            "die_with_driver(os.getpid())\nprint('still running')")
    res = subprocess.run([python_exe, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stdout == "" and res.stderr == "", res.stderr[-2000:]


def test_the_polling_watch_ends_an_orphan(python_exe: str) -> None:
    """Where PR_SET_PDEATHSIG is missing a thread polls the parent pid: a driver exits, its worker follows."""
    psutil = pytest.importorskip("psutil")
    worker = ("import os, threading, time\n"
              "from spatial_mllm_ros.reward.workers import watch_driver\n"
              "threading.Thread(target=watch_driver, args=(os.getppid(),), daemon=True).start()\n"
              "print('watching', flush=True)\ntime.sleep(120)")
    driver = ("import os, subprocess, sys\n"
              f"w = subprocess.Popen([sys.executable, '-c', {worker!r}], stdout=subprocess.PIPE, "
              "stderr=subprocess.DEVNULL, text=True)\n"
              "assert w.stdout.readline() == 'watching\\n'\nprint(w.pid, flush=True)\n"
              "os._exit(0)")  # no cleanup, as under kill -9
    res = subprocess.run([python_exe, "-c", driver], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    orphan = psutil.Process(int(res.stdout))
    deadline = time.monotonic() + 5
    while running(orphan) and time.monotonic() < deadline:
        time.sleep(0.1)
    if running(orphan):
        orphan.kill()
        pytest.fail("the orphaned worker was still running 5 s after its driver exited")
