"""The lease lock of output folders on object storage (common/lease.py), on fsspec's in-memory
file system: a live lease refuses a second run and names its owner, a stale one is taken over,
a held one is renewed and released."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from common import storage
from common.files import FolderLock, LockedError
from common.lease import LEASE_NAME, LeaseLock, folder_lock


@pytest.fixture
def folder() -> str:
    return f"memory://lease-{uuid.uuid4().hex}/out"


def _lease(folder: str, expires_in: float) -> None:
    storage.write_json(storage.join(folder, LEASE_NAME),
                       {"host": "node-7", "pid": 4242, "run_id": "other", "command": "stylize.py --out x",
                        "ttl_s": 60, "expires": time.time() + expires_in})


def _read(folder: str) -> dict:
    return json.loads(storage.read_text(storage.join(folder, LEASE_NAME)))


def test_a_live_lease_refuses_a_second_run_naming_its_owner(folder):
    _lease(folder, expires_in=30)
    with pytest.raises(LockedError, match=r"in use by another stage-1 run \(host node-7, pid 4242: "
                                          r"stylize.py --out x\)"):
        with LeaseLock(folder, "stage-1 run", settle_s=0):
            pass
    assert _read(folder)["run_id"] == "other"   # left as it was


def test_a_stale_lease_is_taken_over_renewed_and_released(folder):
    _lease(folder, expires_in=-1)   # its run stopped renewing
    with LeaseLock(folder, "training", ttl_s=0.3, settle_s=0) as lock:
        first = _read(folder)
        assert first["run_id"] == lock.record["run_id"] and first["host"] == lock.record["host"]
        time.sleep(0.5)   # the renewal thread writes every ttl/3
        assert _read(folder)["expires"] > first["expires"]
        with pytest.raises(LockedError, match=rf"pid {lock.record['pid']}"):   # held: refused
            with LeaseLock(folder, "training", settle_s=0):
                pass
    assert not storage.exists(storage.join(folder, LEASE_NAME))


def test_of_two_runs_taking_a_free_lease_at_once_the_last_writer_keeps_it(folder):
    first, second = LeaseLock(folder, "training", settle_s=0), LeaseLock(folder, "training", settle_s=0)
    first._write()    # first has written and waits for its settle time; second writes meanwhile
    second._write()
    with pytest.raises(LockedError):
        first._refuse_if_held(first._read())   # what first finds after settling
    second._refuse_if_held(second._read())


def test_the_lock_of_a_folder_is_a_flock_locally_and_a_lease_on_a_url(tmp_path, folder):
    assert isinstance(folder_lock(tmp_path, "training"), FolderLock)
    assert isinstance(folder_lock(folder, "training"), LeaseLock)
