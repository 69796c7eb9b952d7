"""Write stage 1's content and style manifests from two folders of images.

    python pipeline/make_manifests.py --contents photos/ --styles paintings/ --out data/mine
    python pipeline/make_manifests.py ... --tags paintings/tags.json

Reads: every image under each folder (recursively; extensions from ``embed.extensions``).
A style image's first subfolder is its ``group`` (paintings/monet/a.jpg: group ``monet``): the
styles of one group go to train or to test together, so keep near-duplicates (one artist, one
series) in one subfolder. A content image's first subfolder is its ``category``. ``--tags``
is a JSON file mapping a style image's path, relative to the styles folder, to its list of tags.
Writes: ``<out>/contents.parquet`` and ``<out>/styles.parquet`` (ids from the file paths, paths
relative to ``<out>``), then reads them back with stage 1's own checks.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script, pipeline/ is first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from collections import Counter  # noqa: E402
from typing import Sequence  # noqa: E402

from common.config import ConfigError, add_config_args, load_config  # noqa: E402
from common.files import write_csv  # noqa: E402
from shards.manifest import (CONTENT_SCHEMA, STYLE_SCHEMA, ManifestError,  # noqa: E402
                             read_content_manifest, read_style_manifest, write_manifest)
from stylecode.collection import find_images  # noqa: E402
from stylecode.identity import StyleCodeError  # noqa: E402

CONTENTS, STYLES, LABELS = "contents.parquet", "styles.parquet", "labels.csv"


def image_id(relative: str, taken: Counter) -> str:
    """An id from a relative path (letters, digits, '_' and '-'; no dots), unique among
    ``taken``: ``monet/Water Lilies.jpg`` -> ``monet-Water_Lilies``."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", str(Path(relative).with_suffix("")).replace("/", "-"))
    taken[stem] += 1
    return stem if taken[stem] == 1 else f"{stem}-{taken[stem]}"


def _first_folder(relative: str) -> str:
    parts = Path(relative).parts
    return parts[0] if len(parts) > 1 else ""


def _rows(folder: Path, out: Path, extensions: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """(id, path relative to out, relative path in folder, first subfolder) per image."""
    taken: Counter = Counter()
    return [(image_id(item.id, taken), os.path.relpath(item.path, out), item.id, _first_folder(item.id))
            for item in find_images(str(folder), extensions)]


def read_tags(path: Path | None) -> dict[str, list[str]]:
    if path is None:
        return {}
    try:
        tags = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"--tags {path}: {exc}") from None
    if not isinstance(tags, dict):
        raise ManifestError(f"--tags {path}: must map image paths to lists of tags")
    for key, value in tags.items():
        if not (isinstance(value, list) and all(isinstance(t, str) and t for t in value)):
            raise ManifestError(f"--tags {path}: {key!r}: tags must be a list of strings, got {value!r}")
    return tags


def make_manifests(contents: Path, styles: Path, out: Path, extensions: Sequence[str],
                   tags_file: Path | None = None, label_column: str | None = None) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    tags = read_tags(tags_file)
    content_rows = [{"content_id": i, "path": p, "category": folder}
                    for i, p, _, folder in _rows(contents, out, extensions)]
    style_entries = _rows(styles, out, extensions)
    style_rows = [{"style_id": i, "path": p, "group": folder or None, "tags": tags.get(rel, [])}
                  for i, p, rel, folder in style_entries]
    unknown = sorted(set(tags) - {rel for _, _, rel, _ in style_entries})
    if unknown:
        raise ManifestError(f"--tags {tags_file}: {len(unknown)} path(s) match no image under "
                            f"{styles}, e.g. {unknown[:3]}")
    write_manifest(content_rows, CONTENT_SCHEMA, out / CONTENTS)
    write_manifest(style_rows, STYLE_SCHEMA, out / STYLES)
    if label_column:
        write_labels(style_entries, label_column, out / LABELS)
    return out / CONTENTS, out / STYLES


def write_labels(style_entries: list[tuple[str, str, str, str]], column: str, path: Path) -> None:
    """The style images as a labelled collection (``eval.labelled.table``): each image's first
    subfolder in ``column``; an image with none is unlabelled (a distractor)."""
    write_csv(path, ["id", "path", column],
              [(image, relative_path, folder) for image, relative_path, _, folder in style_entries])


def describe(content_path: Path, style_path: Path) -> str:
    contents, styles = read_content_manifest(content_path), read_style_manifest(style_path)
    categories = len({row.category for row in contents if row.category})
    groups = len({row.group for row in styles})
    tagged = sum(1 for row in styles if row.tags)
    return (f"{content_path}: {len(contents)} content images, {categories} categories\n"
            f"{style_path}: {len(styles)} style images, {groups} groups, {tagged} with tags")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--contents", type=Path, required=True, help="folder of content photos")
    parser.add_argument("--styles", type=Path, required=True,
                        help="folder of style images; first subfolder = group")
    parser.add_argument("--tags", type=Path, default=None,
                        help="JSON: {path relative to --styles: [tag, ...]} (optional)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two manifests")
    parser.add_argument("--label-column", default=None, metavar="NAME",
                        help="also write <out>/labels.csv: the style images with their first "
                             "subfolder as label column NAME (e.g. artist), the table that "
                             "eval.labelled.table names for labelled retrieval")
    args = parser.parse_args(argv)
    try:
        extensions = load_config(args.config, args.overrides).embed.extensions
        paths = make_manifests(args.contents, args.styles, args.out.resolve(), extensions, args.tags,
                               args.label_column)
        print(describe(*paths))
        if args.label_column:
            print(f"{args.out / LABELS}: style images labelled by {args.label_column}")
    except (ConfigError, ManifestError, StyleCodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
