"""Secrets never reach a log or a file; bad settings fail at load with the setting's name."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from nova_pipeline.simulator.process import simulator_process
from tests.conftest import dagster_materialize

SIM = [
    "--seed",
    "7",
    "--sims",
    "30",
    "--groups",
    "2",
    "--events-per-sim-day",
    "8",
    "--now",
    "2026-11-20T12:00:00+05:00",
]


def base_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "NOVA_DATA_DIR": str(tmp_path / "data"),
        "NOVA_GROUPS": "1=A,2=B",
    }


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_token_appears_nowhere_after_retries_and_a_failed_run(tmp_path):
    token = f"nvtok-{secrets.token_hex(12)}"
    env = {**base_env(tmp_path), "NOVA_API_TOKEN": token, "NOVA_PAGE_SIZE": "20"}
    outputs = []
    retrying = [
        *SIM,
        "--token",
        token,
        "--faults",
        "server_error",
        "--fault-rate",
        "server_error=0.3",
    ]
    with simulator_process(retrying) as api_url:
        ok = dagster_materialize({**env, "NOVA_API_URL": api_url})
        outputs += [ok.stdout, ok.stderr]
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert "retrying" in ok.stderr
    with simulator_process([*SIM, "--token", "another-token"]) as api_url:
        failed = dagster_materialize({**env, "NOVA_API_URL": api_url})
        outputs += [failed.stdout, failed.stderr]
        assert failed.returncode != 0
        assert "NOVA_API_TOKEN" in failed.stderr
    assert not any(token in text for text in outputs)
    assert files_containing(tmp_path / "home", token.encode()) == []
    assert files_containing(tmp_path / "data", token.encode()) == []
    assert (tmp_path / "data" / "nova.duckdb").exists()
    assert list((tmp_path / "home").rglob("*")), "the event log was written"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NOVA_GROUPS": "1:Trackers"}, "NOVA_GROUPS: '1:Trackers' is not `<id>=<name>`"),
        ({"NOVA_TIMEZONE": "Asia/Atlantis"}, "NOVA_TIMEZONE: 'Asia/Atlantis' is not a known"),
        ({"NOVA_START_DATE": "2999-01-01"}, "NOVA_START_DATE: 2999-01-01 is not in the past"),
        ({"NOVA_API_TOKEN": "nvtok\r\nX: 1"}, "NOVA_API_TOKEN: character 6 of 11 is a control"),
    ],
)
def test_a_bad_setting_fails_at_load_naming_it(tmp_path, env, message):
    result = dagster_materialize({**base_env(tmp_path), **env})
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "data").exists(), "nothing ran"


def test_an_unreachable_api_fails_the_run_at_its_start_naming_nova_api_url(tmp_path):
    env = {
        **base_env(tmp_path),
        "NOVA_API_URL": "http://127.0.0.1:9/api",
        "NOVA_MAX_ATTEMPTS": "2",
        "NOVA_CONNECT_TIMEOUT": "0.5",
    }
    result = dagster_materialize(env)
    assert result.returncode != 0
    assert "Is NOVA_API_URL (http://127.0.0.1:9/api) right and reachable?" in result.stderr
