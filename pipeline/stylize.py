"""Stage 1: stylize content x style pairs with NST methods on Ray actors, write shards.

    python pipeline/stylize.py --config configs/tiny.yaml --out /abs/shards [key=value ...]
    ray job submit --working-dir . -- python pipeline/stylize.py --out /abs/shards ...

Reads: the manifests of ``data.content_manifest`` / ``data.style_manifest`` (every row checked
before Ray starts), or the synthetic world of ``world`` (generated when missing); NST model
files as each ``stylize.methods`` entry names them (magenta: from the installed package).
Writes to ``--out`` (a folder, or a URL such as ``s3://bucket/shards``: checked and leased before
any work, see README "Object storage"): ``config.yaml``, ``_stage1.json`` (the plan's fingerprint), one folder per
split (``train``, ``test-<method>``, ``crops``) of WebDataset tars, each with its parquet index
and, written last, its stats file; each split's ``_info.json`` (role, counts) at the end.
Before any work it prints the styles, contents and images of every split, and a warning for
each count the data cannot fill.

The plan is fixed up front; one actor call writes one whole shard. Complete shards (tar, index
and stats file all there) are skipped, so rerunning the same command finishes a run that died
half-way or was interrupted (Ctrl-C: exit 130).
A shard whose actor dies, or that raises, is retried (``stylize.ray.shard_retries``); one that
still fails is named in ``<out>/_failures.json`` while the others complete, and the command
exits 1 (bad config or input: 2).
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script, pipeline/ is first on sys.path and this file
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stylize package

import argparse  # noqa: E402

from common.config import add_config_args, load_config  # noqa: E402
from common.files import LockedError  # noqa: E402
from pipeline.runner import ShardsFailed, Stage1Error, run_stage1  # noqa: E402

EXIT_INTERRUPTED = 130   # 128 + SIGINT, as a shell reports a Ctrl-C


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", default="outputs/shards",
                        help="output folder or URL (s3://, gs://, ...) for the splits (a path is "
                             "made absolute: under `ray job submit` pass an absolute path or a URL, "
                             "the job runs in a temporary copy of the repo)")
    args = parser.parse_args(argv)
    try:
        run_stage1(load_config(args.config, args.overrides), args.out)
    except ShardsFailed as exc:
        print(f"[stage1] error: {exc}", file=sys.stderr)
        return 1
    except (Stage1Error, LockedError, ValueError, FileNotFoundError) as exc:
        print(f"[stage1] error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Shards are published whole (stats last) and a rerun skips the complete ones and
        # clears the temporaries of the others: nothing is lost, no traceback is needed.
        print("[stage1] interrupted; rerun to finish", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
