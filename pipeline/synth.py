"""Generate the synthetic world of a config on its own (stage 1 does it when needed).

    python pipeline/synth.py [--config configs/tiny.yaml] [--out DIR] [--contact-sheet PNG]
                             [--sheet-thumb PX] [--sheet-colours N] [--force] [key.sub=value ...]

Writes the world's images, its content and style manifests and the resolved config under
``--out`` (default: the config's ``world.dir``); see ``world.generate`` for the layout.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not pipeline/, wins imports
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402

from common.config import add_config_args, load_config, save_config  # noqa: E402
from world.generate import contact_sheet, ensure_world, generate_world, world_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", default=None, help="world directory (default: the config's world.dir)")
    parser.add_argument("--contact-sheet", default=None, metavar="PNG", help="also write a contact sheet here")
    parser.add_argument("--sheet-thumb", type=int, default=96, help="contact sheet thumbnail size (px)")
    parser.add_argument("--sheet-colours", type=int, default=None,
                        help="quantise the contact sheet to this many colours (smaller PNG)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a complete world exists")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    out = Path(args.out).expanduser().resolve() if args.out else world_dir(cfg)
    cfg["world"]["dir"] = str(out)
    gen = generate_world if args.force else ensure_world
    paths = gen(cfg["world"], cfg["seed"], out, progress=not args.quiet)
    config_path = save_config(cfg, out)
    print(f"world:            {paths.root}")
    print(f"content manifest: {paths.content_manifest}")
    print(f"style manifest:   {paths.style_manifest}")
    print(f"resolved config:  {config_path}")
    if args.contact_sheet:
        sheet = contact_sheet(paths, Path(args.contact_sheet).expanduser().resolve(),
                              thumb=args.sheet_thumb, max_colours=args.sheet_colours)
        print(f"contact sheet:    {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
