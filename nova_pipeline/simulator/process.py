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


class SimulatorChild:
    """`python -m nova_pipeline.simulator` as a child process on one loopback port, kept for
    its life: `make ui` restarts it there when it ends, as `dagster dev` was given its URL."""

    def __init__(self, args: Sequence[str], port: int, timeout_s: float) -> None:
        self.args = tuple(args)
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.api_url = f"{self.base}/api"
        """What NOVA_API_URL should be."""
        self.timeout_s = timeout_s
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it and wait until it answers; stopped again if it does not."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nova_pipeline.simulator", "--port", str(self.port), *self.args],
            stdout=subprocess.DEVNULL,
            preexec_fn=functools.partial(end_with_parent, os.getpid()),
            # Out of the terminal's process group, which its Ctrl-C reaches whole: stopped
            # by what started it, once done with it. Ended by the Ctrl-C at once, it left a
            # run Dagster had yet to see interrupted failing on refused connections.
            start_new_session=True,
        )
        try:
            wait_until_ready(
                self.process,
                lambda: httpx.get(f"{self.base}/_simulator/health", timeout=1),
                f"the simulator on {self.base}",
                self.timeout_s,
            )
        except BaseException:
            self.stop()
            raise

    def ended(self) -> int | None:
        """Its exit code if it has ended, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def simulator_child(
    args: Sequence[str] = (), port: int | None = None, timeout_s: float = 30.0
) -> Iterator[SimulatorChild]:
    """The simulator started (on a free port unless `port`), answering; stopped on exit."""
    child = SimulatorChild(args, port or free_port(), timeout_s)
    child.start()
    try:
        yield child
    finally:
        child.stop()


@contextmanager
def simulator_process(
    args: Sequence[str] = (), port: int | None = None, timeout_s: float = 30.0
) -> Iterator[str]:
    """Start `python -m nova_pipeline.simulator`, wait until it answers, yield its API URL
    (what NOVA_API_URL should be), and stop it on exit."""
    with simulator_child(args, port, timeout_s) as child:
        yield child.api_url
