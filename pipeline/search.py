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

from common import storage  # noqa: E402
from common.config import add_config_args, load_config  # noqa: E402
from common.images import open_image  # noqa: E402
from common.schema import Config  # noqa: E402
from pipeline.embed import add_model_args, model_recipe  # noqa: E402
from stylecode import StyleCodeError, StyleModel  # noqa: E402
from stylecode.index import (KINDS, SearchIndex, build_index, load_index,  # noqa: E402
                             measure_recall, save_index, search_parameters)
from stylecode.query import (best, collection_codes, index_config, index_model,  # noqa: E402
                             index_recipe, load_head, results, text_scores)
from stylecode.sheet import SheetRow, contact_sheet  # noqa: E402
from stylecode.store import read_folder, read_state  # noqa: E402
from tagging import TextEncoder  # noqa: E402

def build_command(args: argparse.Namespace, cfg: Config) -> dict:
    folder = storage.resolve(args.embeddings)
    out = storage.resolve(args.out) if args.out else storage.join(folder, "index")
    storage.check_remote(read=[folder], write=[out])
    started = time.time()
    embeddings = read_folder(folder)
    if not embeddings.ids:
        raise StyleCodeError(f"{folder}: no usable codes (all {embeddings.failed} images failed)")
    kind, scfg = args.kind or cfg.search.index, cfg.search
    index, factory = build_index(embeddings.codes, kind, scfg)
    recall = None if kind == "flat" else measure_recall(
        index, embeddings.codes, scfg.k, scfg.recall_queries, cfg.seed)
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


def query_model(args: argparse.Namespace, index: SearchIndex, cfg: Config) -> StyleModel:
    """The model named on the command line, else the one the collection was embedded with;
    baselines are built from --config, else from the config saved beside the embeddings (the
    one they were embedded with). Checked against the index."""
    recipe = model_recipe(args.models, cfg) if args.models else index_recipe(index)
    return index_model(index, index_config(index, cfg if args.config else None, args.overrides),
                       recipe)


def image_rows(args: argparse.Namespace, index: SearchIndex, k: int, cfg: Config) -> list[SheetRow]:
    queries = [open_image(path) for path in args.image]   # an unreadable query names its file
    model = query_model(args, index, cfg)
    scores, positions = index.search(model.embed(queries), k)
    return [SheetRow(image, Path(path).name, results(index, s, p))
            for image, path, s, p in zip(queries, args.image, scores, positions)]


def text_rows(args: argparse.Namespace, index: SearchIndex, k: int) -> list[SheetRow]:
    if not args.head:
        raise StyleCodeError("--text needs --head: a tagging head trained on the index's model")
    head = load_head(args.head, index, TextEncoder(args.text_model))
    codes = collection_codes(index)
    rows = []
    for text in args.text:
        scores = text_scores(head, codes, text)
        top = best(scores, k)
        rows.append(SheetRow(text, f'"{text}"', results(index, scores[top], top)))
    return rows


def query_command(args: argparse.Namespace, cfg: Config) -> list[SheetRow]:
    if bool(args.image) == bool(args.text):
        raise StyleCodeError("query by --image (one or more) or by --text, not both or neither")
    storage.check_remote(read=[args.index])
    index = load_index(args.index)
    k = cfg.search.k if args.k is None else args.k
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
        if cfg.search.threads:
            faiss.omp_set_num_threads(cfg.search.threads)
        (build_command if args.command == "build" else query_command)(args, cfg)
    except (ValueError, FileNotFoundError) as exc:  # StyleCodeError, ImageError, ConfigError...
        print(f"[search] error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
