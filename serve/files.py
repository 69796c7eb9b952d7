"""The collection's own image files, and nothing else: lookup by item id, checks, thumbnails.

A request names an item by its id in the index, never by a path, so only indexed images can be
asked for at all. On top of that, an id that looks like a path escape (``..``, an absolute
path) is refused before the lookup, and a file is served only when its real location (symlinks
followed) lies inside the collection's root folder: an indexed symlink that points elsewhere is
refused too. Thumbnails are made once, on first request, and kept in a cache folder on disk
(named after the file's real path, size and modification time, so a replaced image gets a new
one).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Sequence

from PIL import ImageOps

from common.files import atomic_output
from common.images import ImageError, open_image
from stylecode.identity import StyleCodeError

THUMB_QUALITY = 85


class ServeError(Exception):
    """A request that cannot be answered; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def is_local(path: str) -> bool:
    return "://" not in path


def collection_root(paths: Sequence[str]) -> Path:
    """The deepest folder holding every local image of the collection (lexically: a symlink
    inside it still counts as inside, its target is checked when served)."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths if is_local(p)]
    if not folders:
        raise StyleCodeError("the collection has no local image files to serve")
    return Path(os.path.commonpath(folders))


def check_id(item_id: str) -> str:
    """Refuse ids that try to leave the collection (whatever the index holds)."""
    pure = PurePosixPath(item_id.replace("\\", "/"))
    if not item_id or pure.is_absolute() or ".." in pure.parts or "\0" in item_id:
        raise ServeError(f"refused: {item_id!r} is not an item id of the collection", 400)
    return item_id


class Library:
    """Serves the files of one collection: ``paths`` by ``ids`` (index order)."""

    def __init__(self, ids: Sequence[str], paths: Sequence[str], cache: Path,
                 root: Path | None = None, thumb_size: int = 160):
        self.paths = dict(zip(ids, paths))
        self.root = (root or collection_root(paths)).resolve()
        self.cache = cache
        self.thumb_size = thumb_size

    def file(self, item_id: str) -> Path:
        """The real, local file of an item inside the root; ServeError otherwise."""
        path = self.paths.get(check_id(item_id))
        if path is None:
            raise ServeError(f"no item {item_id!r} in the collection", 404)
        if not is_local(path):
            raise ServeError(f"item {item_id!r} is not a local file ({path})", 404)
        try:
            real = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):  # gone since it was indexed, or a symlink loop
            raise ServeError(f"item {item_id!r}: file not found", 404) from None
        if not real.is_relative_to(self.root) or not real.is_file():
            raise ServeError(f"refused: item {item_id!r} points outside the collection "
                             f"({self.root})", 403)
        return real

    def thumbnail(self, item_id: str) -> Path:
        """A JPEG of at most thumb_size px a side, made on first request and kept."""
        real = self.file(item_id)
        stat = real.stat()
        key = f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}\0{self.thumb_size}"
        thumb = self.cache / "thumbs" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.jpg"
        if not thumb.is_file():
            try:
                image = ImageOps.contain(open_image(real), (self.thumb_size, self.thumb_size))
            except ImageError as exc:
                raise ServeError(str(exc), 404) from None
            with atomic_output(thumb) as handle:   # two requests at once: the last rename wins
                image.save(handle, format="JPEG", quality=THUMB_QUALITY)
        return thumb
