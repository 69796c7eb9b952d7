"""The web app (Flask): one page (``static/``) and a small JSON API over loaded spaces.

    GET  /                          the page
    GET  /api/info                  models (upload? words?), label columns, collection size
    GET  /api/items?offset=&limit=  the collection, in index order, to browse
    GET  /api/query?id=ID&k=K       every model's neighbours of a collection image
    POST /api/query  (image=FILE)   every model's neighbours of an uploaded image
    GET  /api/words?q=TEXT&k=K      every model with a tagging head: images that match the words
    GET  /api/map?model=NAME        the model's 2-D map of the collection
    GET  /thumb/ID, /image/ID       a collection image's thumbnail, the image itself

Errors are JSON ``{"error": message}`` with a 4xx status. Images are asked for by item id
(``serve.files``), never by path.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import quote

from flask import Flask, jsonify, request, send_file
from PIL import Image
from werkzeug.exceptions import HTTPException

from common.images import ImageError, image_from_bytes
from serve.atlas import MapSettings, collection_map
from serve.files import Library, ServeError, check_id
from serve.labels import Labels
from serve.space import Hits, Space
from stylecode.identity import StyleCodeError

STATIC = Path(__file__).resolve().parent / "static"
MAX_K = 100
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
PAGE_LIMIT = 200


@dataclass
class ServeOptions:
    k: int = 8                                  # results per query unless the page asks otherwise
    max_upload_bytes: int = 16 * 1024 * 1024
    max_upload_pixels: int = 40_000_000         # decoded size of an upload (bomb guard)
    map_settings: MapSettings = MapSettings()
    # Host headers answered (None: any). Loopback names only by default: a web page elsewhere
    # whose name an attacker points at 127.0.0.1 (DNS rebinding) gets a 400, not the collection.
    trusted_hosts: tuple[str, ...] | None = LOOPBACK_NAMES


class State:
    """What the routes read: spaces, files, labels; and the maps, computed once each."""

    def __init__(self, spaces: Sequence[Space], library: Library, labels: Labels,
                 options: ServeOptions):
        self.spaces = {space.name: space for space in spaces}
        self.library, self.labels, self.options = library, labels, options
        ids = dict.fromkeys(item_id for space in spaces for item_id in space.index.ids)
        self.items = {item_id: self._item(item_id) for item_id in ids}   # built once: queries reuse them
        self.order = list(ids)
        self._maps: dict[str, dict] = {}
        self._map_lock = threading.Lock()

    def _item(self, item_id: str) -> dict:
        quoted = quote(item_id)
        return {"id": item_id, "labels": self.labels.of(item_id), "thumb": f"/thumb/{quoted}",
                "image": f"/image/{quoted}"}

    def results(self, space: Space, hits: Hits) -> list[dict]:
        ids = space.index.ids
        return [{**self.items[ids[position]], "score": round(score, 4)} for position, score in hits]

    def space(self, name: str) -> Space:
        if name not in self.spaces:
            raise ServeError(f"no model {name!r} (models: {', '.join(self.spaces)})", 404)
        return self.spaces[name]

    def map(self, name: str) -> dict:
        space = self.space(name)
        with self._map_lock:   # t-SNE once per index, even when the page asks twice at once
            if name not in self._maps:
                cache = space.index.folder / "_serve"
                self._maps[name] = collection_map(space.index, space.codes, cache,
                                                  self.options.map_settings)
        return self._maps[name]


def _k(options: ServeOptions) -> int:
    text = request.args.get("k", "")
    if not text:
        return options.k
    if not text.isdigit() or not 1 <= int(text) <= MAX_K:
        raise ServeError(f"k must be a whole number from 1 to {MAX_K}, got {text!r}", 400)
    return int(text)


def _each_model(state: State, query: Callable[[Space], Hits | None]) -> dict:
    """Every model's answer side by side; a model that cannot answer says why in its place."""
    answers = {}
    for name, space in state.spaces.items():
        try:
            hits = query(space)
        except StyleCodeError as exc:
            answers[name] = {"error": str(exc)}
            continue
        answers[name] = ({"error": "this image is not in this model's index"} if hits is None
                         else {"results": state.results(space, hits)})
    return answers


def _upload(options: ServeOptions) -> tuple[str, Image.Image]:
    upload = request.files.get("image")
    if upload is None:
        raise ServeError("send the image as the form field 'image'", 400)
    name = f"upload {upload.filename or 'image'}"
    try:
        return name, image_from_bytes(upload.read(), name, max_pixels=options.max_upload_pixels)
    except ImageError as exc:
        raise ServeError(str(exc), 400) from None


def _info(state: State) -> dict:
    models = [{"name": name, "hash": s.index.info.hash, "dim": s.index.info.dim,
               "count": len(s.index.ids), "kind": s.index.meta.get("kind", ""),
               "upload": s.model is not None, "upload_note": s.upload_note,
               "words": s.head is not None} for name, s in state.spaces.items()]
    return {"models": models, "k": state.options.k, "count": len(state.order),
            "columns": state.labels.columns, "colour_by": state.labels.colour_by,
            "max_upload_bytes": state.options.max_upload_bytes}


def _map(state: State, name: str) -> dict:
    saved, ids = state.map(name), state.space(name).index.ids
    points = [{"id": ids[p], "x": x, "y": y, "colour": state.labels.colour(ids[p]),
               "thumb": state.items[ids[p]]["thumb"]}
              for p, (x, y) in zip(saved["positions"], saved["xy"])]
    return {"model": name, "colour_by": state.labels.colour_by, "points": points,
            "count": len(ids), "legend": sorted({p["colour"] for p in points})}


def create_app(spaces: Sequence[Space], library: Library, labels: Labels,
               options: ServeOptions | None = None) -> Flask:
    """The app over loaded spaces (one per index); ``library`` serves the collection's files."""
    state = State(spaces, library, labels, options or ServeOptions())
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = state.options.max_upload_bytes   # 413 beyond it
    if state.options.trusted_hosts is not None:
        app.config["TRUSTED_HOSTS"] = list(state.options.trusted_hosts)
    # "/image//etc/passwd" must reach the id check (and be refused), not be redirected to a
    # path with the slashes merged.
    app.url_map.merge_slashes = False
    app.json.sort_keys = False   # answers keep their order (rank), and skip a sort per request
    app.extensions["serve"] = state

    @app.errorhandler(ServeError)
    def refused(exc: ServeError):
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=f"{exc.name}: {exc.description}"), exc.code

    @app.get("/")
    def page():
        return send_file(STATIC / "index.html")

    @app.get("/api/info")
    def info():
        return jsonify(_info(state))

    @app.get("/api/items")
    def items():
        offset = request.args.get("offset", 0, type=int)
        limit = min(request.args.get("limit", 60, type=int), PAGE_LIMIT)
        page = state.order[max(offset, 0):max(offset, 0) + max(limit, 0)]
        return jsonify(total=len(state.order), items=[state.items[i] for i in page])

    @app.get("/api/query")
    def query_by_id():
        item_id = check_id(request.args.get("id", ""))
        if item_id not in state.items:
            raise ServeError(f"no item {item_id!r} in the collection", 404)
        k = _k(state.options)
        return jsonify(query=state.items[item_id], models=_each_model(state, lambda s: s.by_id(item_id, k)))

    @app.post("/api/query")
    def query_by_upload():
        k = _k(state.options)
        name, image = _upload(state.options)
        return jsonify(query={"upload": name}, models=_each_model(state, lambda s: s.by_image(image, k)))

    @app.get("/api/words")
    def query_by_words():
        text = request.args.get("q", "").strip()
        if not text:
            raise ServeError("give the words to search for as q=", 400)
        k = _k(state.options)
        return jsonify(query={"words": text}, models=_each_model(state, lambda s: s.by_words(text, k)))

    @app.get("/api/map")
    def collection_map_view():
        return jsonify(_map(state, request.args.get("model") or next(iter(state.spaces))))

    @app.get("/thumb/<path:item_id>")
    def thumbnail(item_id: str):
        return send_file(state.library.thumbnail(item_id), mimetype="image/jpeg", max_age=3600)

    @app.get("/image/<path:item_id>")
    def image(item_id: str):
        return send_file(state.library.file(item_id), max_age=3600)

    return app
