"""Writes one shard atomically: the tar under a temporary name; when it is complete, its parquet
index, then the tar renamed to its final name, then the stats file that marks the shard complete
(so reruns can skip it). A reader never meets a published tar without its index."""
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

from common.files import atomic_output, publish, temporary_path, write_json
from shards.schema import (INDEX_SCHEMA, INFO_NAME, META_MEMBER, STATUS_FAILED, STATUS_OK,
                           STYLE_MEMBER, ItemMeta, SampleMeta, sample_key, shard_paths, shard_stem,
                           split_role)


@dataclass
class ShardWriter:
    """Collects style groups for one shard; ``close()`` publishes tar, index and stats."""

    split_dir: Path
    number: int
    split: str
    rows: list[dict] = field(default_factory=list)
    samples: int = 0
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.split_dir = Path(self.split_dir)
        self.split_dir.mkdir(parents=True, exist_ok=True)
        self.paths = shard_paths(self.split_dir, self.number)
        self._tmp_tar = temporary_path(self.paths["tar"])
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
        with atomic_output(self.paths["index"]) as fh:
            pq.write_table(pa.Table.from_pylist(self.rows, schema=INDEX_SCHEMA), fh)
        publish(self._tmp_tar, self.paths["tar"])
        ok = sum(row["status"] == STATUS_OK for row in self.rows)
        stats = {"shard": shard_stem(self.number), "split": self.split, "samples": self.samples,
                 "images": ok, "failed": len(self.rows) - ok, "planned": len(self.rows),
                 "seconds": round(time.time() - self.started, 3)}
        write_json(self.paths["stats"], stats)
        return stats

    def abort(self) -> None:
        self._tar.close()
        self._tmp_tar.unlink(missing_ok=True)


def write_split_info(split_dir: Path, split: str, stats: list[dict], extra: dict) -> dict:
    """Summarise a split's complete shards in ``_info.json``, with the split's role (from its
    name and ``extra["held_out"]``, the run's held-out method)."""
    info = {"split": split, "role": split_role(split, extra.get("held_out")),
            "shards": [s["shard"] + ".tar" for s in stats],
            "samples": sum(s["samples"] for s in stats), "images": sum(s["images"] for s in stats),
            "failed": sum(s["failed"] for s in stats), **extra}
    write_json(Path(split_dir) / INFO_NAME, info)
    return info
