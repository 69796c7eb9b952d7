import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common import storage
from common.images import open_image
from shards.manifest import (ManifestError, read_content_manifest, read_image_manifest,
                             read_style_manifest)


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


def test_manifests_at_a_url_resolve_relative_paths_against_their_prefix(small_manifests, tmp_path):
    content, _ = small_manifests
    url = f"memory://manifests-{tmp_path.name}"
    storage.upload(content.parent, url)   # the manifests and their images, side by side
    contents = read_content_manifest(storage.join(url, "content.parquet"))
    assert contents[0].path == f"{url}/content/content0.jpg" and len(contents) == 24
    assert open_image(contents[0].path).size == (48, 48)
    assert read_image_manifest(storage.join(url, "style.parquet"))[1] == ("s1", f"{url}/style/style1.jpg")
    with pytest.raises(ManifestError, match=rf"manifest not found: {url}/nothing.parquet"):
        read_style_manifest(storage.join(url, "nothing.parquet"))


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


def test_a_symlink_loop_names_file_and_row(small_manifests):
    content, style = small_manifests
    (content.parent / "content" / "loop").symlink_to("loop")     # ln -s loop loop
    _rewrite(content, lambda rows: rows[4].update(path="content/loop"))
    for check_files in (True, False):
        with pytest.raises(ManifestError, match=r"content\.parquet: row 4 \(content_id=c4\): "
                                                r"symlink loop: .*content/loop"):
            read_content_manifest(content, check_files=check_files)
    (style.parent / "style" / "a").symlink_to("b")               # a loop of two links
    (style.parent / "style" / "b").symlink_to("a")
    _rewrite(style, lambda rows: rows[2].update(path="style/a"))
    with pytest.raises(ManifestError, match=r"style\.parquet: row 2 \(style_id=s2\): symlink loop"):
        read_style_manifest(style)


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


def _set_column(path, name, values, kind=None):
    table = pq.read_table(path)
    column = pa.array(values, kind)
    pq.write_table(table.set_column(table.column_names.index(name), name, column), path)


def _nan_path_via_pandas(path):
    frame = pq.read_table(path).to_pandas()
    frame.loc[4, "path"] = float("nan")   # what a pandas merge leaves for a missing file
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


# (which manifest, rewrite, row and column the error must name, what it must say)
BAD_COLUMNS = {
    "int path": (0, lambda p: _set_column(p, "path", list(range(24))), 0, "path", "holds int64"),
    "all-NaN path": (0, lambda p: _set_column(p, "path", [float("nan")] * 24), 0, "path",
                     "holds double"),
    "NaN path in pandas": (0, _nan_path_via_pandas, 4, "path", "is null"),
    "null path": (1, lambda p: _set_column(p, "path", [f"style/style{i}.jpg" if i != 6 else None
                                                       for i in range(12)]), 6, "path", "is null"),
    "int content_id": (0, lambda p: _set_column(p, "content_id", list(range(24))), 0, "content_id",
                       "holds int64"),
    "int category": (0, lambda p: _set_column(p, "category", [None, None] + list(range(22))), 2,
                     "category", "holds int64"),
    "int group": (1, lambda p: _set_column(p, "group", [i % 6 for i in range(12)]), 0, "group",
                  "holds int64"),
    "tags as a plain string": (1, lambda p: _set_column(p, "tags", ["oil paint"] * 12), 0, "tags",
                               "holds string, expected a list of strings"),
    "tags of ints": (1, lambda p: _set_column(p, "tags", [[1, 2]] * 12), 0, "tags",
                     "holds list<element: int64>"),
    "a null tag": (1, lambda p: _set_column(p, "tags", [["oil"]] * 9 + [["oil", None]] + [[]] * 2),
                   9, "tags", "a null in the list"),
}


@pytest.mark.parametrize("case", list(BAD_COLUMNS))
def test_a_wrongly_typed_column_names_file_row_and_column(small_manifests, case):
    which, rewrite, row, column, says = BAD_COLUMNS[case]
    path = small_manifests[which]
    rewrite(path)
    reader = read_content_manifest if which == 0 else read_style_manifest
    with pytest.raises(ManifestError) as caught:
        reader(path, check_files=False)
    message = str(caught.value)
    assert message.startswith(f"{path}: row {row}: column '{column}'"), message
    assert says in message, message


def test_a_categorical_category_column_is_read_as_strings(small_manifests):
    content, _ = small_manifests
    table = pq.read_table(content)
    categories = table.column("category").dictionary_encode()
    pq.write_table(table.set_column(table.column_names.index("category"), "category", categories),
                   content)
    assert read_content_manifest(content)[0].category == "k0"
