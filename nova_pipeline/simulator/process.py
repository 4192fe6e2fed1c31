"""Run the simulator as a separate process on a free loopback port (demo, UI, benchmarks)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the simulator exited with code {proc.returncode}")
            try:
                if httpx.get(f"{base}/_simulator/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not answer on {base} in {timeout_s} s")
            time.sleep(0.1)
        yield f"{base}/api"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
