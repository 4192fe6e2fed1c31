"""constraints.txt is what a fresh clone installs: it must cover pyproject.toml's ranges,
and the suite must be running on exactly its versions, or "it passed" says nothing about
what a user gets."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def test_every_declared_dependency_is_pinned_within_its_range():
    pins = _pins()
    outside = [
        f"{r.name}: {pins.get(canonicalize_name(r.name), 'not pinned')} (pyproject: {r})"
        for r in _declared()
        if not r.specifier.contains(pins.get(canonicalize_name(r.name), "0"), prereleases=True)
    ]
    assert not outside, f"constraints.txt does not match pyproject.toml (make lock): {outside}"


def test_the_suite_runs_on_the_pinned_versions():
    pins = _pins()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    drifted = {
        name: f"{installed[name]}, pinned {version}"
        for name, version in pins.items()
        if name in installed and installed[name] != version
    }
    assert not drifted, (
        f"installed versions differ from constraints.txt: {drifted}; `touch constraints.txt` "
        "and make installs the pinned ones again"
    )
