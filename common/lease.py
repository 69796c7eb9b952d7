"""One run per output folder on object storage, where ``flock`` does not exist: a lease object.

``<folder>/_lock.json`` records its owner (host, pid, command, a run id) and when the lease
expires. A live run renews it from a background thread every third of its time to live; a
killed run stops renewing, so its lease goes stale and the next run takes it over. A live
lease refuses a second run, naming its owner.

Object stores offer no compare-and-swap that every backend supports, so taking a lease is
write, wait ``settle_s``, read back: of two runs that take a free lease at once, the one whose
write landed last keeps it and the other is refused. Two runs slip through only if one's read
and write are further apart than ``settle_s``. Expiry is judged by the clocks of the hosts:
they must agree to well within ``ttl_s`` (NTP does).

:func:`folder_lock` picks the lock for a location: ``common.files.FolderLock`` on a local
folder, a :class:`LeaseLock` on a URL.
"""
from __future__ import annotations

import _thread
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from common import storage
from common.files import FolderLock, LockedError, UnwritableError

LEASE_NAME = "_lock.json"


class LeaseLock:
    """An exclusive lease on a folder on object storage, held while a run writes into it."""

    def __init__(self, folder: str, what: str, ttl_s: float = 60.0, settle_s: float = 2.0):
        self.location = storage.join(folder, LEASE_NAME)
        self.folder, self.what, self.ttl_s, self.settle_s = folder, what, ttl_s, settle_s
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "run_id": uuid.uuid4().hex,
                       "command": " ".join(sys.argv)[:200], "ttl_s": ttl_s}
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> "LeaseLock":
        self._refuse_if_held(self._read())
        self._write()
        time.sleep(self.settle_s)   # a run that took it at the same moment has written by now
        self._refuse_if_held(self._read())
        self._renewer = threading.Thread(target=self._renew, name="lease-renewal", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self._mine(self._read()):
            storage.remove(self.location)

    def _read(self) -> dict | None:
        try:
            text = storage.read_text(self.location)
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except ValueError:   # an unreadable lease protects nothing: treat it as stale
            return None

    def _write(self) -> None:
        try:
            storage.write_json(self.location, {**self.record, "expires": time.time() + self.ttl_s})
        except storage.StorageError as exc:
            raise UnwritableError(str(exc)) from None

    def _mine(self, lease: dict | None) -> bool:
        return lease is not None and lease.get("run_id") == self.record["run_id"]

    def _refuse_if_held(self, lease: dict | None) -> None:
        """Refuse when another run's lease is live; a stale one (its run stopped renewing) is
        taken over."""
        if lease is None or self._mine(lease) or lease.get("expires", 0) < time.time():
            return
        raise LockedError(f"{self.folder} is in use by another {self.what} ({describe(lease)}): "
                          "wait for it to finish, or stop it, then run again (a killed run's "
                          f"lease expires {lease['expires'] - time.time():.0f}s from now)")

    def _renew(self) -> None:
        """Renew every third of the lease's life; a lease found taken (this process stalled
        past its expiry and another run took over) stops this run, which no longer owns the
        folder."""
        while not self._stop.wait(self.ttl_s / 3):
            lease = self._read()
            if not self._mine(lease):
                print(f"error: lost the lease on {self.folder} to {describe(lease)}; stopping",
                      file=sys.stderr, flush=True)
                _thread.interrupt_main()
                return
            self._write()


def describe(lease: dict | None) -> str:
    if lease is None:
        return "nobody (the lease was deleted)"
    return f"host {lease.get('host')}, pid {lease.get('pid')}: {lease.get('command', '')}"


def folder_lock(location: str | Path, what: str) -> FolderLock | LeaseLock:
    """The lock of an output folder: flock on a local one, a lease on object storage."""
    return LeaseLock(location, what) if storage.is_url(location) else FolderLock(location, what)
