"""A collection of images to embed: found in a folder, by a glob or in a manifest, and cut
into output files deterministically.

Every image gets an id: its path relative to the folder (or to the glob's fixed leading
folders), or the manifest's id. A folder or glob may be a URL (``common.storage``). Images are sorted by id and output file k holds images
``k * rows_per_file`` to ``(k + 1) * rows_per_file - 1``: the same inputs always give the same
files, so a rerun knows which are complete.
"""
from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common import storage
from shards.manifest import ManifestError, read_image_manifest
from stylecode.identity import StyleCodeError

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Item:
    """One image of a collection: its id and where to read it."""

    id: str
    path: str


def _folder_images(folder: Path, extensions: set[str]) -> list[Item]:
    return [Item(path.relative_to(folder).as_posix(), str(path)) for path in folder.rglob("*")
            if path.suffix.lower() in extensions and path.is_file()]


def _glob_root(pattern: str) -> Path:
    """The glob's leading folders without wildcards: ids are paths relative to it."""
    fixed = []
    for part in Path(pattern).parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _glob_images(pattern: str) -> list[Item]:
    root = _glob_root(pattern).resolve()
    paths = [Path(p).resolve() for p in glob.glob(pattern, recursive=True)]
    return [Item(path.relative_to(root).as_posix(), str(path)) for path in paths if path.is_file()]


def _url_images(source: str, extensions: set[str]) -> tuple[list[Item], str]:
    """The images under a folder (prefix) or matching a glob on object storage, and what an
    empty result means."""
    if _GLOB_CHARS & set(source):
        parts = source.split("/")
        fixed = parts[:next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))]
        root = "/".join(fixed) + "/"
        return ([Item(url[len(root):] if url.startswith(root) else storage.name(url), url)
                 for url in storage.glob(source)], f"glob {source!r} matches no files")
    found = [Item(key, url) for key, url in storage.find(source)
             if Path(key).suffix.lower() in extensions]
    return found, f"folder {source} holds no image files ({', '.join(sorted(extensions))})"


def _manifest_images(path: Path) -> list[Item]:
    try:
        return [Item(image_id, image_path) for image_id, image_path in read_image_manifest(path)]
    except ManifestError as exc:
        raise StyleCodeError(str(exc)) from None


def find_images(source: str, extensions: Sequence[str]) -> list[Item]:
    """The images of a folder (recursively, files with one of ``extensions``, any case), of a
    glob, or of a parquet manifest, sorted by id. Finding none is an error naming ``source``."""
    path = Path(source)
    if storage.is_url(source):
        images, what = _url_images(source, {ext.lower() for ext in extensions})
    elif path.is_dir():
        images = _folder_images(path.resolve(), {ext.lower() for ext in extensions})
        what = f"folder {path} holds no image files ({', '.join(extensions)})"
    elif path.suffix == ".parquet" and path.is_file():
        images = _manifest_images(path)
        what = f"manifest {path} lists no images"
    elif _GLOB_CHARS & set(source) or path.is_file():
        images = _glob_images(source)
        what = f"glob {source!r} matches no files"
    else:
        raise StyleCodeError(f"input not found: {source} (give a folder, a glob or a .parquet "
                             "manifest)")
    if not images:
        raise StyleCodeError(f"nothing to embed: {what}")
    return sorted(images, key=lambda image: image.id)


def digest(images: Sequence[Item]) -> str:
    """A short hash of the ids and paths, in order: another collection, another digest."""
    hasher = hashlib.sha256()
    for image in images:
        hasher.update(f"{image.id}\0{image.path}\0".encode())
    return hasher.hexdigest()[:16]


def file_count(images: int, rows_per_file: int) -> int:
    return -(-images // rows_per_file)


def file_rows(images: Sequence[Item], number: int, rows_per_file: int) -> Sequence[Item]:
    """The images output file ``number`` holds."""
    return images[number * rows_per_file:(number + 1) * rows_per_file]
