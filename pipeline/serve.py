"""A local web page to search a collection by style and walk its map.

    python pipeline/serve.py --index /abs/emb/index                     # one model
    python pipeline/serve.py --index /abs/emb/index --index /abs/emb-vgg/index \\
        --head EVAL/heads/nst.pt --labels labels.csv                      # two side by side
    python pipeline/serve.py --demo demo                                  # after `make demo`

Serves, on http://127.0.0.1:8765/ by default (--host 0.0.0.0 opens it to the network), one page
over one or two indexes built by `pipeline/search.py build` from `pipeline/embed.py`'s codes of
one collection:
- click an image of the collection (or of the map, or a result), or upload one: each model's
  top k with thumbnails, cosines and labels, side by side;
- words (--head: a tagging head of `pipeline/eval.py`, EVAL/heads/<model>.pt, given to the index
  of the model it was trained on): the images whose codes match them;
- a 2-D map of the collection (t-SNE of each model's codes), coloured by a label column, hover to
  preview, click to query; computed once and kept in <index>/_serve/map.json until the index
  changes (thumbnails too, in <index>/_serve/thumbs/).
Only the indexed images are served, by id: a path out of the collection (.., absolute, a symlink
out) is refused. Uploads are limited (--max-upload-mb) and opened like every input image. A query
model or head of another hash than the index's is refused, as by `pipeline/search.py`.

--demo DEMO serves the held-out method's test images of `make demo` (DEMO/shards) with the NST
encoder next to a baseline: it writes them out, embeds and indexes them under DEMO/serve/
(printing each command; a rerun reuses what is complete) and uses DEMO/eval/heads/ for words.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not this folder, wins imports
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # (this file would shadow serve/)

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import faiss  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from common.config import ConfigError, add_config_args, load_config  # noqa: E402
from models.baselines import list_baselines  # noqa: E402
from serve import ServeOptions, load_app  # noqa: E402
from serve.app import LOOPBACK_NAMES  # noqa: E402
from serve.atlas import MapSettings  # noqa: E402
from serve.demo import prepare_demo  # noqa: E402
from shards.reader import ShardError  # noqa: E402

LOOPBACK = "127.0.0.1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    source = parser.add_argument_group("what to serve (--index, or --demo)")
    source.add_argument("--index", action="append", default=[], metavar="DIR",
                        help="an index folder of pipeline/search.py build; twice: two models side by side")
    source.add_argument("--demo", type=Path, metavar="DEMO",
                        help="make demo's output folder: serve its held-out test images")
    source.add_argument("--demo-model", default="nst", help="--demo: the trained run (DEMO/runs/NAME)")
    source.add_argument("--demo-baseline", default="vgg_moments", choices=list_baselines(),
                        help="--demo: the baseline shown beside it")
    source.add_argument("--head", action="append", default=[], metavar="FILE",
                        help="a tagging head (EVAL/heads/<model>.pt) for words; repeatable")
    source.add_argument("--text-model", help="the heads' sentence-transformers folder "
                        "(default: the installed all-MiniLM-L6-v2)")
    source.add_argument("--labels", help="a label table (CSV or parquet: path, label columns; "
                        "docs/labelled.md); default: each image's first folder")
    source.add_argument("--colour-by", help="the label column that colours the map")
    source.add_argument("--root", help="the folder every served image must lie in (default: the "
                        "deepest one holding all indexed images)")
    source.add_argument("--cache", help="thumbnail folder (default: <first index>/_serve)")
    web = parser.add_argument_group("the web server")
    web.add_argument("--host", default=LOOPBACK, help="address to bind (default: this machine only)")
    web.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    web.add_argument("--k", type=int, default=8, help="results per query the page starts with")
    web.add_argument("--max-upload-mb", type=float, default=16.0, help="largest upload accepted")
    web.add_argument("--map-points", type=int, default=5000,
                     help="codes on the map at most (a seeded sample of larger collections)")
    web.add_argument("--no-upload", action="store_true",
                     help="do not load the models (no upload queries; starts faster)")
    return parser.parse_args(argv)


def _sources(args: argparse.Namespace) -> tuple[list[str], list[str], str | None]:
    """Index folders, heads and label table: given, or made from the demo's outputs."""
    if bool(args.index) == bool(args.demo):
        raise ValueError("give --index (once or twice) or --demo, not both or neither")
    if not args.demo:
        return args.index, args.head, args.labels
    demo = prepare_demo(args.demo, args.demo_model, args.demo_baseline)
    return ([str(p) for p in demo.indexes], args.head or [str(p) for p in demo.heads],
            args.labels or str(demo.labels))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _warn_if_open(host: str) -> None:
    if not _is_loopback(host):
        print(f"[serve] warning: bound to {host}: anyone who can reach this machine can query "
              "the collection and see its images", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        cfg = load_config(args.config, args.overrides) if args.config else None
        indexes, heads, labels = _sources(args)
        started = time.time()
        options = ServeOptions(k=args.k, max_upload_bytes=int(args.max_upload_mb * 2**20),
                               map_settings=MapSettings(points=args.map_points),
                               trusted_hosts=LOOPBACK_NAMES if _is_loopback(args.host) else None)
        app = load_app(indexes, heads, labels, args.colour_by, args.text_model, cfg,
                       args.overrides, not args.no_upload, args.root, args.cache, options)
        threads = (cfg or load_config(None, args.overrides)).search.threads
        if threads:
            faiss.omp_set_num_threads(threads)
        server = make_server(args.host, args.port, app, threaded=True)
    except (ValueError, FileNotFoundError, ConfigError, ShardError, OSError) as exc:
        print(f"[serve] error: {exc}", file=sys.stderr)
        return 2
    _warn_if_open(args.host)
    print(f"[serve] {len(indexes)} index(es) loaded in {time.time() - started:.1f}s; "
          f"serving on http://{args.host}:{server.server_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("[serve] stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
