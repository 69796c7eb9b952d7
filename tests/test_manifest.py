import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shards.manifest import ManifestError, read_content_manifest, read_style_manifest


def _rewrite(path, mutate):
    rows = pq.read_table(path).to_pylist()
    mutate(rows)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_valid_manifests_resolve_relative_paths(small_manifests):
    content, style = small_manifests
    contents = read_content_manifest(content)
    styles = read_style_manifest(style)
    assert len(contents) == 24 and len(styles) == 12
    assert contents[0].category == "k0" and styles[1].group == "g1"
    assert styles[0].tags == ("test",)
    assert all(p.startswith(str(content.parent)) for p in (c.path for c in contents))


def test_missing_column_names_file_and_column(small_manifests):
    content, _ = small_manifests
    table = pq.read_table(content).drop(["path"])
    pq.write_table(table, content)
    with pytest.raises(ManifestError, match=r"content\.parquet: missing column\(s\) \['path'\]"):
        read_content_manifest(content)


def test_duplicate_id_names_both_rows(small_manifests):
    _, style = small_manifests
    _rewrite(style, lambda rows: rows[5].update(style_id=rows[2]["style_id"]))
    with pytest.raises(ManifestError, match=r"row 5: duplicate style_id 's2' \(first at row 2\)"):
        read_style_manifest(style)


def test_missing_file_names_row_and_path(small_manifests):
    content, _ = small_manifests
    _rewrite(content, lambda rows: rows[3].update(path="content/gone.jpg"))
    with pytest.raises(ManifestError, match=r"row 3 \(content_id=c3\): file not found: .*gone\.jpg"):
        read_content_manifest(content)


def test_id_with_dot_is_refused(small_manifests):
    content, _ = small_manifests
    _rewrite(content, lambda rows: rows[7].update(content_id="c.7"))
    with pytest.raises(ManifestError, match=r"row 7: content_id 'c\.7' is not a valid id"):
        read_content_manifest(content)


def test_missing_group_defaults_to_own_style(small_manifests):
    _, style = small_manifests
    pq.write_table(pq.read_table(style).drop(["group", "tags"]), style)
    styles = read_style_manifest(style)
    assert [s.group for s in styles] == [s.style_id for s in styles]
