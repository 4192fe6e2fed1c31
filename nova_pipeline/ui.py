"""`make ui`: the simulator and `dagster dev` (webserver + daemon), stopped together on Ctrl-C.

`dagster dev` started from a non-interactive shell inherits SIGINT and SIGTERM as ignored
(measured here), so it is started in its own session with default signal handling and
stopped through its process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from nova_pipeline.demo import DEMO_GROUPS
from nova_pipeline.simulator.process import simulator_process

REPO = Path(__file__).resolve().parent.parent


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def dagster_dev(
    env: Mapping[str, str], host: str = "127.0.0.1", port: int = 3000, timeout_s: float = 180
) -> Iterator[str]:
    """Run `dagster dev` on the workspace; yield the webserver URL once GraphQL answers."""
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", str(REPO / "workspace.yaml"), "-h", host, "-p", str(port)],
        env=dict(env),
        cwd=REPO,
        start_new_session=True,
        preexec_fn=_default_signals,
    )
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with code {proc.returncode}")
            try:
                answer = httpx.post(f"{url}/graphql", json={"query": "{ version }"}, timeout=5)
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev did not answer on {url} in {timeout_s} s")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> int:
    port = int(os.environ.get("DAGSTER_PORT", "3000"))
    with simulator_process(["--groups", "6", "--sims", "500"]) as api_url:
        env = {**os.environ, "NOVA_API_URL": api_url}
        env.setdefault("NOVA_GROUPS", DEMO_GROUPS)
        with dagster_dev(env, port=port) as url:
            print(f"\nDagster UI at {url} (simulator at {api_url}); Ctrl-C stops both.", flush=True)
            try:
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nstopping dagster dev and the simulator", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
