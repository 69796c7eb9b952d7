"""Atomic file output: every file a run publishes appears whole or not at all.

A writer fills a unique temporary name in the target's folder, flushes it to disk (fsync) and
renames it over the target. A run killed mid-write leaves the previous file (or none) in place
and at worst a hidden ``.<name>.<hex>.tmp`` that the next run may delete.
"""
from __future__ import annotations

import csv
import io
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence


def temporary_path(path: Path) -> Path:
    """A unique hidden name next to ``path`` (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def publish(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk and rename it over ``path``."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def staged_output(tmp: Path, publish_to: Callable[[Path], None]) -> Iterator[BinaryIO]:
    """A binary handle on the local file ``tmp``, passed to ``publish_to`` only when the block
    succeeds; ``tmp`` is gone afterwards either way (published, or deleted)."""
    try:
        with open(tmp, "wb") as fh:
            yield fh
        publish_to(tmp)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_output(temporary_path(path), lambda tmp: publish(tmp, path)) as fh:
        yield fh


def write_atomic(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as fh:
        fh.write(data)


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV table (``header`` then ``rows``, "\n" line ends) atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode())


def json_text(payload: Any) -> str:
    """The layout of every JSON file a run writes (here or through ``common.storage``):
    indented, keys sorted."""
    return json.dumps(payload, indent=2, sort_keys=True)


def write_json(path: str | Path, payload: Any) -> None:
    write_atomic(path, json_text(payload).encode())


class LockedError(RuntimeError):
    """The output folder cannot be taken for this run: another live process is writing it."""


class UnwritableError(LockedError):
    """The output folder cannot be written at all (a read-only file system, no permission).

    A LockedError so that every entry point that reports a held folder reports this too, as one
    line and a non-zero exit, before any work."""


class FolderLock:
    """An exclusive, advisory lock on an output folder, held while a run writes into it.

    ``flock`` on ``<folder>/.lock``: the kernel releases it when the holder exits, however it
    dies, so a stale lock file of a killed run never blocks the next one. The file records the
    holder's pid and command for the error message.
    """

    def __init__(self, folder: str | Path, what: str):
        self.path = Path(folder) / ".lock"
        self.what = what
        self._fh: BinaryIO | None = None

    def __enter__(self) -> "FolderLock":
        import fcntl
        import sys

        fh = self._open()
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().decode(errors="replace").strip() or "unknown"
            fh.close()
            raise LockedError(f"{self.path.parent} is in use by another {self.what} ({holder}): "
                              "wait for it to finish, or stop it, then run again") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}".encode())
        fh.flush()
        self._fh = fh
        return self

    def _open(self) -> BinaryIO:
        """The lock file, opened for writing: the first write into the folder, so a folder that
        takes none fails here, named, instead of as a traceback from deep in the run."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return open(self.path, "a+b")
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise UnwritableError(f"cannot write to {self.path.parent}: {reason}") from None

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()   # closing releases the flock
            self._fh = None
