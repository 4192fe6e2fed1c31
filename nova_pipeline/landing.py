"""The landing zone: every page of every pull, verbatim, in zstd-compressed NDJSON files per
day and selector.

    <root>/call_sms/day=2026-11-18/fetch=<utc stamp>-<id>/all.ndjson.zst, g_1.ndjson.zst, ...
                                                          all.nonconforming.ndjson.zst, ...

Each line is one page: `{"day", "selector", "page", "fetched_at", "body": <response body>}`.
Verbatim means the bytes sent but for three changes that leave every JSON value the same:
a byte order mark before the body is dropped and a body in a declared charset other than
UTF-8 (or, declaring none, in NOVA_API_CHARSET's) is made UTF-8 (both by the client,
`api/client.py`), and a line break between tokens becomes a space (`page_line`).
Pages whose every item meets the contract go to `<selector>.ndjson.zst`, which DuckDB reads
with fixed column types; a page with any other item goes to
`<selector>.nonconforming.ndjson.zst` (written only when there is one), whose items are
judged rule by rule. zstd at level 1 lands a million-item day's 197 MB of JSON as 34 MB
(a year of such days: 12 GB instead of 72); zstd's own worker thread compresses while the
client waits on the API, and DuckDB reads the files as fast as plain ones
(docs/design.md). `zstd -dc <file>` or `zstandard.open` show the pages.
A fetch writes into a fresh `fetch=` folder, each file through a temporary name and a
rename, so a reader never sees half a file. Which fetch is current is recorded by the
`call_sms_raw_pages` table (it names each page's file, relative to the landing folder,
and line); older fetch folders of a day are removed once a newer one is committed there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from nova_pipeline.api import Page

SUFFIX = ".ndjson.zst"
"""DuckDB's readers pick the decompression from this ending."""

ZSTD_LEVEL = 1
"""For the million-item day: 0.74 s of CPU, 34 MB; level 3 took 1.16 s for 36 MB."""


@contextmanager
def _naming(folder: Path) -> Iterator[None]:
    """A write that fails (the disk full) raises an OSError that names no file: name the
    folder it was writing in, so the step's error says which disk is full."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror, str(folder)) from exc


@dataclass(frozen=True)
class PageRecord:
    """Where one page landed and how it was obtained: a row of `call_sms_raw_pages`."""

    day: dt.date
    selector: str
    page: int
    status: int
    attempts: int
    retry_reasons: str
    item_count: int
    body_bytes: int
    fetched_at: dt.datetime
    request: str
    landing_file: str
    line: int
    conforms: bool


def page_line(day: dt.date, page: Page) -> tuple[bytes, bytes, bytes]:
    """One NDJSON line holding the body verbatim, in three parts written one after the
    other (joining them would copy every body once more: 0.1 s per million items). JSON
    allows a line break only as whitespace between tokens, so replacing it by a space
    changes no value."""
    body = page.body
    if b"\n" in body or b"\r" in body:
        body = body.replace(b"\r", b" ").replace(b"\n", b" ")
    head = b'{"day":"%s","selector":"%s","page":%d,"fetched_at":"%s","body":' % (
        day.isoformat().encode(),
        page.selector.encode(),
        page.page,
        page.fetched_at.isoformat().encode(),
    )
    return head, body, b"}\n"


class LandingFilesMissing(FileNotFoundError):
    """The raw index names landing files that are not in the landing folder."""


class Landing:
    def __init__(self, base: Path | str) -> None:
        self.base = Path(base)
        self.root = self.base / "call_sms"

    def path(self, landing_file: str) -> Path:
        """Where an indexed file is now. The index names files relative to the landing
        folder, so NOVA_DATA_DIR can move with its files; a name stored absolute (before
        it was relative) stays as it was."""
        return (self.base / landing_file).resolve()

    def existing(self, indexed: Iterable[tuple[dt.date, str]]) -> list[Path]:
        """The paths of indexed (day, file) pairs, each checked to be there: DuckDB alone
        would fail on the first missing one without saying what to do about it."""
        paths = {(day, self.path(name)) for day, name in indexed}
        missing = sorted((day, path) for day, path in paths if not path.is_file())
        if missing:
            days = sorted({day.isoformat() for day, _ in missing})
            listed = ", ".join(days[:5])
            if len(days) > 5:
                listed += f" and {len(days) - 5} more days"
            raise LandingFilesMissing(
                f"call_sms_raw_pages indexes landing files that are not in "
                f"{self.base.resolve()}: {len(missing)} file(s) of {listed} (the first: "
                f"{missing[0][1]}). If the folder moved, point NOVA_DATA_DIR at it; otherwise "
                "materialize call_sms_raw_pages for those days to pull them again."
            )
        return sorted({path for _, path in paths})

    def day_dir(self, day: dt.date) -> Path:
        return self.root / f"day={day.isoformat()}"

    def new_fetch_dir(self, day: dt.date) -> Path:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        path = self.day_dir(day) / f"fetch={stamp}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def write_pages(
        self, day: dt.date, fetch_dir: Path, selector: str, pages: Iterable[Page]
    ) -> list[PageRecord]:
        """Stream one pull's pages into its files (each made atomically); a record per page."""
        paths = {
            True: fetch_dir / f"{selector}{SUFFIX}",
            False: fetch_dir / f"{selector}.nonconforming{SUFFIX}",
        }
        tmp = {conforms: path.with_name(path.name + ".tmp") for conforms, path in paths.items()}
        names = {c: path.relative_to(self.base).as_posix() for c, path in paths.items()}
        records: list[PageRecord] = []
        with _naming(fetch_dir), ExitStack() as stack:
            files: dict[bool, BinaryIO] = {}
            writers: dict[bool, zstandard.ZstdCompressionWriter] = {}
            lines: Counter[bool] = Counter()
            for page in pages:
                if page.conforms not in files:
                    files[page.conforms] = stack.enter_context(open(tmp[page.conforms], "wb"))
                    # threads=1: zstd compresses on a worker thread of its own, beside the fetch.
                    writers[page.conforms] = stack.enter_context(
                        zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=1).stream_writer(
                            files[page.conforms], closefd=False
                        )
                    )
                for part in page_line(day, page):
                    writers[page.conforms].write(part)
                records.append(
                    PageRecord(
                        day=day,
                        selector=page.selector,
                        page=page.page,
                        status=page.status,
                        attempts=page.attempts,
                        retry_reasons="; ".join(page.retry_reasons),
                        item_count=page.item_count,
                        body_bytes=len(page.body),
                        fetched_at=page.fetched_at,
                        request=page.request.fingerprint,
                        landing_file=names[page.conforms],
                        line=lines[page.conforms],
                        conforms=page.conforms,
                    )
                )
                lines[page.conforms] += 1
            for conforms, out in files.items():
                writers[conforms].close()
                out.flush()
                os.fsync(out.fileno())
        for conforms in files:
            os.replace(tmp[conforms], paths[conforms])
        return records

    def prune(self, day: dt.date, keep: Path) -> None:
        """Remove the fetch folders of `day` other than `keep` (after `keep` is committed)."""
        for child in self.day_dir(day).glob("fetch=*"):
            if child.resolve() != keep.resolve():
                shutil.rmtree(child, ignore_errors=True)

    def discard(self, fetch_dir: Path) -> None:
        """Remove a fetch that failed before it was committed, and its day's folder if that
        leaves it empty: a `day=` folder is there only for a day with pages landed."""
        shutil.rmtree(fetch_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            fetch_dir.parent.rmdir()
