"""Writes one shard atomically: the tar under a temporary name; when it is complete, its parquet
index, then the tar under its final name, then the stats file that marks the shard complete
(so reruns can skip it). A reader never meets a published tar without its index.

The split folder may be a URL (``common.storage``). Object stores have no rename, so the tar is
filled in a local temporary file and uploaded to its final key only when complete, in one put
or one multipart upload, which the store shows whole or not at all. No temporary key is ever
written to the store: a killed writer leaves nothing there that a rerun must clear, only a
local temporary file in its node's temp folder. (A temporary key then a copy would cost a
second transfer of every tar and leave objects to clean up.)"""
from __future__ import annotations

import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from common import storage
from common.storage import publish_file, write_json
from shards.schema import (INDEX_SCHEMA, INFO_NAME, META_MEMBER, STATUS_FAILED, STATUS_OK,
                           STYLE_MEMBER, ItemMeta, SampleMeta, sample_key, shard_locations,
                           shard_stem, split_role)


@dataclass
class ShardWriter:
    """Collects style groups for one shard; ``close()`` publishes tar, index and stats."""

    split_dir: str | Path
    number: int
    split: str
    rows: list[dict] = field(default_factory=list)
    samples: int = 0
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.paths = shard_locations(self.split_dir, self.number)
        self._tmp_tar = storage.temporary_file(self.paths["tar"])
        self._tar = tarfile.open(self._tmp_tar, "w")

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0  # identical inputs give byte-identical shards
        self._tar.addfile(info, io.BytesIO(data))

    def _row(self, key: str, style_id: str, group: str, item: ItemMeta, status: str,
             reason: str) -> dict:
        return {"split": self.split, "shard": shard_stem(self.number), "sample_key": key,
                "style_id": style_id, "group": group, "index": item.index,
                "member": item.member if status == STATUS_OK else "", "content_id": item.content_id,
                "category": item.category, "method": item.method,
                "params": json.dumps(item.params, sort_keys=True), "seed": item.seed,
                "status": status, "reason": reason}

    def write_sample(self, style_id: str, group: str, tags: Sequence[str], style_jpeg: bytes | None,
                     outputs: list[tuple[ItemMeta, bytes | None, str]]) -> None:
        """Add one style group.

        ``outputs``: (planned item, JPEG bytes or None, failure reason) per planned
        stylization. With ``style_jpeg`` None the whole group failed and only its index rows
        are written.
        """
        key = sample_key(style_id)
        written = [(item, data) for item, data, _ in outputs if data is not None]
        for item, data, reason in outputs:
            failed = data is None or style_jpeg is None
            self.rows.append(self._row(key, style_id, group, item,
                                       STATUS_FAILED if failed else STATUS_OK,
                                       (reason or "style image failed") if failed else ""))
        if style_jpeg is None or not written:
            return
        meta = SampleMeta(style_id=style_id, group=group, tags=list(tags), split=self.split,
                          items=tuple(item for item, _ in written))
        # A sample's files must be adjacent in the tar: the group is written in one go.
        self._add(f"{key}.{STYLE_MEMBER}", style_jpeg)
        for item, data in written:
            self._add(f"{key}.{item.member}", data)
        self._add(f"{key}.{META_MEMBER}", meta.to_json())
        self.samples += 1

    def close(self) -> dict:
        """Publish the shard; returns its stats."""
        self._tar.close()
        with storage.open_output(self.paths["index"]) as fh:
            pq.write_table(pa.Table.from_pylist(self.rows, schema=INDEX_SCHEMA), fh)
        publish_file(self._tmp_tar, self.paths["tar"])
        ok = sum(row["status"] == STATUS_OK for row in self.rows)
        stats = {"shard": shard_stem(self.number), "split": self.split, "samples": self.samples,
                 "images": ok, "failed": len(self.rows) - ok, "planned": len(self.rows),
                 "seconds": round(time.time() - self.started, 3)}
        write_json(self.paths["stats"], stats)
        return stats

    def abort(self) -> None:
        self._tar.close()
        self._tmp_tar.unlink(missing_ok=True)


def write_split_info(split_dir: str | Path, split: str, stats: list[dict], extra: dict) -> dict:
    """Summarise a split's complete shards in ``_info.json``, with the split's role (from its
    name and ``extra["held_out"]``, the run's held-out method)."""
    info = {"split": split, "role": split_role(split, extra.get("held_out")),
            "shards": [s["shard"] + ".tar" for s in stats],
            "samples": sum(s["samples"] for s in stats), "images": sum(s["images"] for s in stats),
            "failed": sum(s["failed"] for s in stats), **extra}
    write_json(storage.join(split_dir, INFO_NAME), info)
    return info
