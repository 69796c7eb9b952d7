"""A local web page over search indexes: query by image, upload or words, two models side by
side, and a 2-D map of the collection (``pipeline/serve.py`` runs it).

    from serve import load_app
    app = load_app(["/abs/emb/index", "/abs/emb-vgg/index"], heads=["EVAL/heads/nst.pt"])
    app.run("127.0.0.1", 8765)
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from flask import Flask

from serve.app import ServeOptions, create_app
from serve.files import Library, ServeError
from serve.labels import Labels, load_labels
from serve.space import Space, attach_heads, name_apart, open_space
from stylecode.identity import StyleCodeError

__all__ = ["Library", "Labels", "ServeError", "ServeOptions", "Space", "create_app", "load_app",
           "open_spaces"]


def _check_one_collection(spaces: Sequence[Space]) -> None:
    """Side by side only makes sense over one collection: an id must name one file."""
    paths: dict[str, str] = {}
    for space in spaces:
        for item_id, path in zip(space.index.ids, space.index.paths):
            if paths.setdefault(item_id, path) != path:
                raise StyleCodeError(f"indexes {spaces[0].index.folder} and {space.index.folder} "
                                     f"are of different collections: item {item_id!r} is "
                                     f"{paths[item_id]} in one, {path} in the other")


def open_spaces(indexes: Sequence[str | Path], heads: Sequence[str | Path] = (),
                text_model: str | Path | None = None, cfg: dict | None = None,
                overrides: Sequence[str] = (), uploads: bool = True) -> list[Space]:
    """One space per index folder, checked to hold one collection, with their heads."""
    if not 1 <= len(indexes) <= 2:
        raise StyleCodeError(f"give one index, or two to compare side by side; got {len(indexes)}")
    spaces = [open_space(folder, cfg, overrides, uploads) for folder in indexes]
    _check_one_collection(spaces)
    name_apart(spaces)
    attach_heads(spaces, heads, text_model)
    return spaces


def load_app(indexes: Sequence[str | Path], heads: Sequence[str | Path] = (),
             labels: str | Path | None = None, colour_by: str | None = None,
             text_model: str | Path | None = None, cfg: dict | None = None,
             overrides: Sequence[str] = (), uploads: bool = True, root: str | Path | None = None,
             cache: str | Path | None = None, options: ServeOptions | None = None) -> Flask:
    """The app over ``indexes`` (folders from ``pipeline/search.py build``): ``labels`` a label
    table, ``root`` the folder files must lie in (default: the deepest one holding them all),
    ``cache`` the thumbnails' folder (default: ``<first index>/_serve``)."""
    spaces = open_spaces(indexes, heads, text_model, cfg, overrides, uploads)
    ids = [i for space in spaces for i in space.index.ids]
    paths = [p for space in spaces for p in space.index.paths]
    library = Library(ids, paths, Path(cache) if cache else spaces[0].index.folder / "_serve",
                      Path(root) if root else None)
    return create_app(spaces, library, load_labels(labels, ids, paths, colour_by), options)
