"""The gate worker: a separate process, started at a lower CPU priority than the flow."""

import os

from flows.batches import GATE_WORKER_NICENESS
from flows.landing import GateWorker
from quality.config import GateConfig


def test_gate_worker_yields_the_cpu_to_the_flow():
    worker = GateWorker({"prompts": GateConfig()})
    try:
        child_pid, child_nice = worker._pool.submit(_pid_and_nice).result(timeout=300)
    finally:
        worker.close()
    assert child_pid != os.getpid()
    assert child_nice == min(19, os.nice(0) + GATE_WORKER_NICENESS)


def _pid_and_nice() -> tuple[int, int]:
    return os.getpid(), os.nice(0)
