"""Generate the synthetic world of a config on its own (stage 1 does it when needed).

    python pipeline/synth.py [--config configs/tiny.yaml] [--out DIR] [--contact-sheet PNG]
                             [--methods-sheet PNG] [--sheet-thumb PX] [--sheet-colours N]
                             [--force] [key.sub=value ...]

Writes the world's images, its content and style manifests and the resolved config under
``--out`` (default: the config's ``world.dir``); see ``world.generate`` for the layout.
``--methods-sheet`` draws a few contents stylized with a few styles by every NST method of
the config (training and held out), at stage 1's image size and strength 1.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not pipeline/, wins imports
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from common.config import add_config_args, load_config, save_config  # noqa: E402
from common.images import open_image  # noqa: E402
from common.schema import Config  # noqa: E402
from shards.codec import pil_to_tensor, to_pil  # noqa: E402
from stylize import configured_method, create_method  # noqa: E402
from world.generate import WorldPaths, contact_sheet, ensure_world, generate_world, world_dir  # noqa: E402

SHEET_CONTENTS, SHEET_STYLES = 5, 4


def _sample(rows: list[dict], count: int, seed: int) -> list[dict]:
    """``count`` rows of distinct categories/techniques where possible, seeded."""
    order = np.random.default_rng(seed).permutation(len(rows))
    picked, kinds = [], set()
    for index in order:
        kind = rows[index].get("technique") or rows[index].get("category")
        if kind not in kinds or len(kinds) >= count:
            picked.append(rows[index])
            kinds.add(kind)
        if len(picked) == count:
            break
    return picked


def methods_sheet(paths: WorldPaths, cfg: Config, out_png: Path, thumb: int = 96) -> Path:
    """Rows: per style, its image then one row per method; columns: the contents."""
    scfg = cfg.stylize
    size, label_w = scfg.image_size, int(thumb * 1.6)
    methods = scfg.methods_used
    contents = _sample(pq.read_table(paths.content_manifest).to_pylist(), SHEET_CONTENTS, cfg.seed)
    styles = _sample(pq.read_table(paths.style_manifest).to_pylist(), SHEET_STYLES, cfg.seed + 1)

    def load(row: dict) -> torch.Tensor:
        return pil_to_tensor(open_image(paths.root / row["path"]).resize((size, size), Image.BICUBIC))

    batch = torch.stack([load(row) for row in contents])
    networks = {}
    for name in methods:
        registered, options = configured_method(name, scfg.methods)
        networks[name] = create_method(registered, **options)
    rows = [("contents", [to_pil(image) for image in batch])]
    for style in styles:
        image = load(style)
        rows.append((f"style {style.get('technique', '')}", [to_pil(image)]))
        for name in methods:
            held = " (held out)" if name == scfg.held_out else ""
            with torch.no_grad():
                outputs = networks[name](batch, image, strength=1.0, seed=cfg.seed).cpu()
            rows.append((name + held, [to_pil(out) for out in outputs]))
    gap = 3
    sheet = Image.new("RGB", (label_w + SHEET_CONTENTS * (thumb + gap), len(rows) * (thumb + gap)),
                      (250, 250, 248))
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=max(10, thumb // 8))
    for r, (label, tiles) in enumerate(rows):
        y = r * (thumb + gap)
        draw.text((4, y + thumb // 2 - 6), label, fill=(20, 20, 20), font=font)
        for k, tile in enumerate(tiles):
            sheet.paste(tile.resize((thumb, thumb), Image.NEAREST), (label_w + k * (thumb + gap), y))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png, format="PNG", optimize=True)
    return out_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", default=None, help="world directory (default: the config's world.dir)")
    parser.add_argument("--contact-sheet", default=None, metavar="PNG", help="also write a contact sheet here")
    parser.add_argument("--methods-sheet", default=None, metavar="PNG",
                        help="also draw contents x styles stylized by every NST method of the config")
    parser.add_argument("--sheet-thumb", type=int, default=96, help="contact sheet thumbnail size (px)")
    parser.add_argument("--sheet-colours", type=int, default=None,
                        help="quantise the contact sheet to this many colours (smaller PNG)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a complete world exists")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    out = Path(args.out).expanduser().resolve() if args.out else world_dir(cfg)
    cfg.world.dir = str(out)
    gen = generate_world if args.force else ensure_world
    paths = gen(cfg.world, cfg.seed, out, progress=not args.quiet)
    config_path = save_config(cfg, out)
    print(f"world:            {paths.root}")
    print(f"content manifest: {paths.content_manifest}")
    print(f"style manifest:   {paths.style_manifest}")
    print(f"resolved config:  {config_path}")
    if args.contact_sheet:
        sheet = contact_sheet(paths, Path(args.contact_sheet).expanduser().resolve(),
                              thumb=args.sheet_thumb, max_colours=args.sheet_colours)
        print(f"contact sheet:    {sheet}")
    if args.methods_sheet:
        sheet = methods_sheet(paths, cfg, Path(args.methods_sheet).expanduser().resolve(), args.sheet_thumb)
        print(f"methods sheet:    {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
