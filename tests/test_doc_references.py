"""The docs cite tests as proof (docs/reliability.md has a column of them): each one cited
must exist, or a renamed or deleted test leaves a claim with nothing behind it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench/analysis.md"]
CITED = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)|`(test_\w+)")


def defined() -> dict[str, set[str]]:
    """Each test module (path from the repo root) and the test functions it defines."""
    return {
        path.relative_to(ROOT).as_posix(): set(
            re.findall(r"^def (test_\w+)", path.read_text(), re.M)
        )
        for path in (ROOT / "tests").rglob("test_*.py")
    }


def test_every_test_the_docs_cite_exists():
    tests = defined()
    everywhere = set().union(*tests.values())
    cited, missing = 0, []
    for doc in DOCS:
        for module, name, bare in CITED.findall(doc.read_text()):
            cited += 1
            found = name in tests.get(module, set()) if module else bare in everywhere
            if not found:
                missing.append(
                    f"{doc.relative_to(ROOT)}: {module + '::' if module else ''}{name or bare}"
                )
    assert cited > 50, "the docs cite tests; the pattern no longer finds them"
    assert missing == []
