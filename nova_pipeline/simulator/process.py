"""Run the simulator as a separate process on a free loopback port (demo, UI, benchmarks),
with what `make ui` also needs for `dagster dev`: waiting until a child answers, and a
child that ends with its parent."""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


PR_SET_PDEATHSIG = 1
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
"""Looked up here, not in the child: between fork and exec a lookup could wait on a lock
another thread of this process held when it forked."""


def end_with_parent(parent: int) -> None:
    """In a child before it starts (`preexec_fn`): on Linux, the kernel sends it SIGTERM
    when `parent` ends, however it ends (SIGKILL too), so no child outlives what started
    it; `parent` gone already, the child ends at once."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(0)


def wait_until_ready(
    proc: subprocess.Popen,
    ready: Callable[[], httpx.Response],
    what: str,
    timeout_s: float,
    poll_s: float = 0.1,
) -> None:
    """Poll `ready` until it answers 200; fail if `proc` exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            if ready().status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer in {timeout_s} s")
        time.sleep(poll_s)


@contextmanager
def simulator_process(
    args: Sequence[str] = (), port: int | None = None, timeout_s: float = 30.0
) -> Iterator[str]:
    """Start `python -m nova_pipeline.simulator`, wait until it answers, yield its API URL
    (what NOVA_API_URL should be), and stop it on exit."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nova_pipeline.simulator", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        preexec_fn=functools.partial(end_with_parent, os.getpid()),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(
            proc,
            lambda: httpx.get(f"{base}/_simulator/health", timeout=1),
            f"the simulator on {base}",
            timeout_s,
        )
        yield f"{base}/api"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
