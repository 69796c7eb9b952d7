"""Search a collection embedded by pipeline/embed.py: by image, or by words through a tag head.

    python pipeline/search.py build --embeddings /abs/emb                       # exact (flat)
    python pipeline/search.py build --embeddings /abs/emb --kind hnsw --out /abs/emb/index-hnsw
    python pipeline/search.py query --index /abs/emb/index --image query.jpg --k 8 --sheet q.png
    python pipeline/search.py query --index /abs/emb/index --text "thick impasto, warm tones" \\
        --head EVAL/heads/nst.pt

build reads the embedding files of --embeddings (every file must read and hold one model's
codes) and writes an index folder (default <embeddings>/index): index.faiss, items.parquet
(id, path per code) and index.json (model name/hash/dimension, kind, parameters, and for an
approximate kind its recall@k against exact search, also printed).
query embeds each --image with the model the collection was embedded with (or the one named
by --checkpoint / --baseline: its hash must match the index's), or scores each --text with a
tagging head trained on that model's codes (its image-model hash must match), prints the top
k with scores and paths, and draws a contact sheet PNG (--sheet).
--embeddings, --out and --index may be URLs (s3://bucket/emb, see common.storage); the contact
sheet is a local file.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not this folder, wins imports
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # (pipeline/stylize.py shadows stylize)

import argparse  # noqa: E402
import time  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from common import storage  # noqa: E402
from common.config import RESOLVED_NAME, add_config_args, load_config  # noqa: E402
from common.images import open_image  # noqa: E402
from pipeline.embed import add_model_args, model_recipe  # noqa: E402
from stylecode import Recipe, StyleCodeError, StyleModel, build  # noqa: E402
from stylecode.index import (KINDS, SearchIndex, build_index, load_index,  # noqa: E402
                             measure_recall, save_index, search_parameters)
from stylecode.sheet import SheetRow, contact_sheet  # noqa: E402
from stylecode.store import ModelInfo, read_folder, read_state  # noqa: E402
from tagging import TagHead, TaggingError, TextEncoder  # noqa: E402

# Codes projected into the text space at once by a text query (bounds its memory).
TEXT_CHUNK = 65536


def build_command(args: argparse.Namespace, cfg: dict) -> dict:
    folder = storage.resolve(args.embeddings)
    out = storage.resolve(args.out) if args.out else storage.join(folder, "index")
    storage.check_remote(read=[folder], write=[out])
    started = time.time()
    embeddings = read_folder(folder)
    if not embeddings.ids:
        raise StyleCodeError(f"{folder}: no usable codes (all {embeddings.failed} images failed)")
    kind, scfg = args.kind or cfg["search"]["index"], cfg["search"]
    index, factory = build_index(embeddings.codes, kind, scfg)
    recall = None if kind == "flat" else measure_recall(
        index, embeddings.codes, scfg["k"], scfg["recall_queries"], cfg["seed"])
    state = read_state(folder)
    meta = {"kind": kind, "factory": factory, "parameters": search_parameters(kind, scfg),
            "recall": recall, "embeddings": folder,
            "model": {key: state["model"][key] for key in ("models", "weights")} if state else {}}
    save_index(out, index, embeddings, meta)
    print(f"[search] index {factory} of {len(embeddings.ids)} codes ({embeddings.info.name}, "
          f"{embeddings.info.dim}-d; {embeddings.failed} failed images left out) in "
          f"{time.time() - started:.1f}s -> {out}")
    if recall:
        print(f"[search] recall@{recall['k']} against exact search: {recall['recall']:.3f} "
              f"({recall['queries']} queries from the collection)")
    return meta


def query_model(args: argparse.Namespace, index: SearchIndex, cfg: dict) -> StyleModel:
    """The model named on the command line, else the one the collection was embedded with;
    baselines are built from --config, else from the config saved beside the embeddings (the
    one they were embedded with). Checked against the index."""
    if args.models:
        recipe = model_recipe(args.models, cfg)
    elif "models" in index.meta["model"]:   # the recipe pipeline/embed.py recorded
        recipe = Recipe.from_dict(index.meta["model"])
    else:
        raise StyleCodeError(f"index {index.folder} does not record its model (embeddings made "
                             "without pipeline/embed.py): name it with --checkpoint or --baseline")
    saved = storage.join(index.meta["embeddings"], RESOLVED_NAME)
    if args.config is None and storage.is_file(saved):
        cfg = load_config(saved, args.overrides)
    model = build(recipe, cfg)
    index.check_model(ModelInfo(model.name, model.hash, model.dim), "the query model")
    return model


def _results(index: SearchIndex, scores: np.ndarray, positions: np.ndarray) -> list[tuple[str, float, str]]:
    return [(index.paths[p], float(s), index.ids[p]) for s, p in zip(scores, positions) if p >= 0]


def image_rows(args: argparse.Namespace, index: SearchIndex, k: int, cfg: dict) -> list[SheetRow]:
    queries = [open_image(path) for path in args.image]   # an unreadable query names its file
    model = query_model(args, index, cfg)
    scores, positions = index.search(model.embed(queries), k)
    return [SheetRow(image, Path(path).name, _results(index, s, p))
            for image, path, s, p in zip(queries, args.image, scores, positions)]


def collection_codes(index: SearchIndex) -> np.ndarray:
    """The indexed codes, read back from the embedding files (an index may hold only
    compressed ones), checked to be the very codes the index was built from."""
    embeddings = read_folder(index.meta["embeddings"])
    if embeddings.ids != index.ids or not index.info.same_model(embeddings.info):
        raise StyleCodeError(f"{index.meta['embeddings']} changed since index {index.folder} was "
                             "built: build the index again")
    return embeddings.codes


def text_rows(args: argparse.Namespace, index: SearchIndex, k: int) -> list[SheetRow]:
    if not args.head:
        raise StyleCodeError("--text needs --head: a tagging head trained on the index's model")
    try:
        head = TagHead.load(args.head, TextEncoder(args.text_model), code_dim=index.info.dim,
                            image_model_hash=index.info.hash)
    except TaggingError as exc:
        raise StyleCodeError(f"{exc} (index {index.folder}: model {index.info.name!r}, hash "
                             f"{index.info.hash})") from None
    codes = collection_codes(index)
    rows = []
    for text in args.text:
        scores = np.concatenate([head.score(codes[start:start + TEXT_CHUNK], [text])[:, 0]
                                 for start in range(0, len(codes), TEXT_CHUNK)])
        best = np.argsort(-scores, kind="stable")[:k]
        rows.append(SheetRow(text, f'"{text}"', _results(index, scores[best], best)))
    return rows


def query_command(args: argparse.Namespace, cfg: dict) -> list[SheetRow]:
    if bool(args.image) == bool(args.text):
        raise StyleCodeError("query by --image (one or more) or by --text, not both or neither")
    storage.check_remote(read=[args.index])
    index = load_index(args.index)
    k = cfg["search"]["k"] if args.k is None else args.k
    rows = image_rows(args, index, k, cfg) if args.image else text_rows(args, index, k)
    for number, row in enumerate(rows, start=1):
        print(f"[search] query {number}: {row.label}")
        for rank, (path, score, item_id) in enumerate(row.results, start=1):
            print(f"  {rank:3d}  {score:7.4f}  {item_id}  {path}")
    sheet = contact_sheet(rows, Path(args.sheet).resolve())
    print(f"[search] contact sheet -> {sheet}")
    return rows


def positive_k(text: str) -> int:
    """--k: a count of results; 0 would otherwise fall back to search.k unnoticed."""
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"k must be a whole number, got {text!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"k must be ≥ 1, got {k}")
    return k


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="index a folder of embedding files")
    add_config_args(build_parser)
    build_parser.add_argument("--embeddings", required=True, help="pipeline/embed.py's --out")
    build_parser.add_argument("--kind", choices=KINDS, help="default: search.index")
    build_parser.add_argument("--out", help="index folder (default: <embeddings>/index)")
    query_parser = commands.add_parser("query", help="search an index by image or by words")
    add_config_args(query_parser)
    query_parser.add_argument("--index", required=True, help="an index folder from build")
    query_parser.add_argument("--image", action="append", default=[], help="a query image; repeatable")
    query_parser.add_argument("--text", action="append", default=[], help="words to search for; repeatable")
    query_parser.add_argument("--head", help="tagging head file (for --text), e.g. EVAL/heads/<model>.pt")
    query_parser.add_argument("--text-model", help="sentence-transformers folder of the head's text "
                              "encoder (default: the installed all-MiniLM-L6-v2)")
    add_model_args(query_parser)
    query_parser.add_argument("--k", type=positive_k, help="results per query (default: search.k)")
    query_parser.add_argument("--sheet", default="search.png", help="contact sheet PNG to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        if cfg["search"]["threads"]:
            faiss.omp_set_num_threads(cfg["search"]["threads"])
        (build_command if args.command == "build" else query_command)(args, cfg)
    except (ValueError, FileNotFoundError) as exc:  # StyleCodeError, ImageError, ConfigError...
        print(f"[search] error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
