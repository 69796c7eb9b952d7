import io
import json
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from shard_factory import make_split
from shards.codec import encode_jpeg
from shards.reader import (ShardError, complete_shards, incomplete_shards, iter_references,
                           iter_samples, read_index, read_info)
from shards.schema import ItemMeta, SampleMeta, is_complete
from shards.writer import ShardWriter
import numpy as np

ITEM = ItemMeta(index=0, content_id="c0", category="", method="m", params={}, seed=1)


def test_stock_webdataset_and_tarfile_read_what_the_writer_wrote(tmp_path):
    split = make_split(tmp_path, "train", n_styles=7, per_style=3, styles_per_shard=3)
    info = read_info(split)
    tars = complete_shards(split)
    assert [t.rsplit("/", 1)[1] for t in tars] == info["shards"]
    samples = list(wds.WebDataset(tars, shardshuffle=False, empty_check=False))
    assert len(samples) == info["samples"] == 7
    for sample in samples:
        assert "." not in sample["__key__"]
        assert {"style.jpg", "x0.jpg", "x1.jpg", "x2.jpg", "json"} <= set(sample)
    members = [m for t in tars for m in tarfile.open(t).getnames()]
    assert sum(m.endswith(".jpg") and ".x" in m for m in members) == info["images"] == 21
    # A sample's files are adjacent in the tar (WebDataset groups consecutive members).
    keys = [m.split(".", 1)[0] for m in members]
    assert keys == sorted(keys, key=keys.index) and len(set(keys)) == 7


def test_reader_decodes_groups_in_plan_order(tmp_path):
    split = make_split(tmp_path, "test-m1", n_styles=2, per_style=4, size=24)
    groups = list(iter_samples(split))
    assert [g.style_id for g in groups] == ["st0-0", "st0-1"]
    assert groups[0].style.size == (24, 24) and len(groups[0].images) == 4
    assert [i.index for i in groups[0].items] == [0, 1, 2, 3]
    assert read_index(split).num_rows == 8


def test_failures_are_indexed_and_skipped_in_the_tar(tmp_path):
    writer = ShardWriter(tmp_path / "train", 0, "train")
    image = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    items = [ItemMeta(index=i, content_id=f"c{i}", category="", method="m", params={}, seed=1)
             for i in range(3)]
    writer.write_sample("a", "g", [], image,
                        [(items[0], image, ""), (items[1], None, "decode error"), (items[2], image, "")])
    writer.write_sample("b", "g", [], None, [(items[0], None, "style unreadable")])
    stats = writer.close()
    assert stats == {**stats, "samples": 1, "images": 2, "failed": 2, "planned": 4}
    rows = pq.read_table(tmp_path / "train" / "shard-000000.parquet").to_pylist()
    assert [(r["style_id"], r["status"], r["reason"]) for r in rows] == [
        ("a", "ok", ""), ("a", "failed", "decode error"), ("a", "ok", ""),
        ("b", "failed", "style unreadable")]
    names = tarfile.open(tmp_path / "train" / "shard-000000.tar").getnames()
    assert names == ["sa.style.jpg", "sa.x0.jpg", "sa.x2.jpg", "sa.json"]
    meta = json.loads(tarfile.open(tmp_path / "train" / "shard-000000.tar").extractfile("sa.json").read())
    assert [i["member"] for i in meta["items"]] == ["x0.jpg", "x2.jpg"]


def test_unfinished_shard_is_invisible(tmp_path):
    writer = ShardWriter(tmp_path / "train", 0, "train")
    image = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    writer.write_sample("a", "g", [], image, [(ITEM, image, "")])
    assert complete_shards(tmp_path / "train") == []
    assert not (tmp_path / "train" / "shard-000000.tar").exists()
    writer.abort()
    assert list((tmp_path / "train").iterdir()) == []


@pytest.mark.parametrize("lost", ["parquet", "tar"])
def test_a_shard_missing_a_file_is_not_complete(tmp_path, lost):
    split = make_split(tmp_path, "train", n_styles=6, per_style=2, styles_per_shard=2)
    (split / f"shard-000001.{lost}").unlink()            # its stats file is still there
    assert complete_shards(split) == [str(split / "shard-000000.tar"), str(split / "shard-000002.tar")]
    assert incomplete_shards(split) == [str(split / "shard-000001.tar")]
    assert read_index(split).num_rows == 8                # the other shards' rows, no error
    assert not is_complete(split, 1) and is_complete(split, 2)


def test_ids_with_dots_cannot_become_keys(tmp_path):
    writer = ShardWriter(tmp_path / "train", 0, "train")
    with pytest.raises(ValueError, match="no dots"):
        writer.write_sample("a.b", "g", [], b"", [])
    writer.abort()


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(ShardError, match="split directory not found"):
        complete_shards(tmp_path / "nope")
    with pytest.raises(ShardError, match="_info.json is missing"):
        read_info(tmp_path)


def test_an_attempt_killed_mid_shard_leaves_nothing_a_retry_or_reader_picks_up(tmp_path):
    split = tmp_path / "train"
    image = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    killed = ShardWriter(split, 0, "train")   # its process dies before close(): no abort either
    killed.write_sample("a", "g", [], image, [(ITEM, image, "")])
    killed._tar.fileobj.flush()
    retry = ShardWriter(split, 0, "train")
    for style in ("a", "b"):
        retry.write_sample(style, "g", [], image, [(ITEM, image, "")])
    retry.close()
    tars = complete_shards(split)
    assert tars == [str(split / "shard-000000.tar")]
    assert [s["__key__"] for s in wds.WebDataset(tars, shardshuffle=False)] == ["sa", "sb"]
    assert read_index(split).num_rows == 2
    leftovers = [p.name for p in split.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".shard-000000.tar.")   # hidden, unread


# What stage 1 has always written for one sample: the typed metadata must read it and write
# it back byte for byte (existing shards stay readable, a rerun writes identical tars).
STORED_JSON = (b'{"group": "g0", "items": [{"category": "k1", "content_id": "c4", "index": 0, '
               b'"member": "x0.jpg", "method": "colour", "params": {"strength": 1.0}, '
               b'"seed": 17}, {"category": "k2", "content_id": "c9", "index": 2, "member": '
               b'"x2.jpg", "method": "whitening", "params": {"eps": 1e-05, "strength": 0.5}, '
               b'"seed": 18}], "split": "train", "style_id": "s3", "tags": ["ink", "wash"]}')


def test_sample_metadata_reads_and_writes_the_stored_format():
    meta = SampleMeta.from_json(STORED_JSON)
    assert (meta.style_id, meta.group, meta.tags, meta.split) == ("s3", "g0", ["ink", "wash"], "train")
    assert [(i.index, i.member, i.method, i.seed) for i in meta.items] == [
        (0, "x0.jpg", "colour", 17), (2, "x2.jpg", "whitening", 18)]
    assert meta.items[1].params == {"eps": 1e-05, "strength": 0.5}
    assert meta.to_json() == STORED_JSON


def _with_json(tar: Path, key: str, data: bytes) -> None:
    """Rewrite ``tar`` with sample ``key``'s json member replaced by ``data``."""
    with tarfile.open(tar) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    with tarfile.open(tar, "w") as archive:
        for member, content in members:
            if member.name == f"{key}.json":
                content, member.size = data, len(data)
            archive.addfile(member, io.BytesIO(content))


def _without(field: str, item: bool = False) -> bytes:
    record = json.loads(STORED_JSON)
    del (record["items"][0] if item else record)[field]
    return json.dumps(record).encode()


@pytest.mark.parametrize("data, reason", [
    (b'{"style_id": "st0-1", "items": [', "is not valid JSON"),
    (b"\xff\xfe not text", "is not valid JSON"),
    (_without("style_id"), "json lacks field(s) ['style_id']"),
    (_without("seed", item=True), "items[0] lacks field(s) ['seed']"),
    (STORED_JSON.replace(b'"index": 0', b'"index": "0"'), "items[0]: 'index' is str, not int"),
    (STORED_JSON.replace(b'"x2.jpg"', b'"x7.jpg"'), "items[1]: member 'x7.jpg' is not 'x2.jpg'"),
    (b'["st0-1"]', "json is list, not an object"),
])
def test_bad_sample_metadata_is_an_error_naming_shard_and_sample(tmp_path, data, reason):
    from train.data import batch_stream
    from common.config import load_config

    split = make_split(tmp_path, "train", n_styles=4, per_style=2, styles_per_shard=2)
    tar = split / "shard-000001.tar"
    _with_json(tar, "sst0-3", data)
    where = f"{tar}: sample sst0-3"
    with pytest.raises(ShardError, match=re.escape(where)) as raised:
        list(iter_samples(split))
    assert reason in str(raised.value)
    with pytest.raises(ShardError, match=re.escape(where)):
        list(iter_references(split))
    for positives in ("style", "group"):   # both of training's stream readers
        train_cfg = load_config(None, ["train.num_workers=0", "train.image_size=16",
                                       "train.shuffle_buffer=4", "train.styles_per_batch=2",
                                       f"train.positives={positives}"]).train
        with pytest.raises(ShardError, match=re.escape(where)):
            for _ in zip(range(4), batch_stream([str(tar)], train_cfg, 0, 0, 1)):
                pass
