"""A small served collection for the page's tests: real JPEGs in three folders (groups), an
image outside the collection with a symlink to it inside, embedded as pipeline/embed.py does
(its own output checks and state file, the model run in-process instead of on Ray actors),
indexed by pipeline/search.py build, and a tagging head."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common.config import load_config
from pipeline import search as search_command
from pipeline.embed import Job, claim_output, model_recipe
from stylecode import build
from stylecode.collection import find_images
from stylecode.store import ModelInfo, file_path, write_file
from tagging import HeadConfig, TextEncoder, train_head

SMALL_EVAL = ["eval.image_size=32", "eval.colour_bins=4", "eval.moments_max_layer=relu2_1"]
GROUP_TAGS = {"g0": ["ink wash"], "g1": ["oil painting"], "g2": ["pixel art"]}
PER_GROUP = 5


@dataclass
class Collection:
    folder: Path        # the collection: <folder>/g<k>/img<i>.jpg and g0/link.jpg
    outside: Path       # an image outside it (link.jpg points here)
    indexes: list[Path]  # colour_hist (flat), vgg_moments (hnsw)
    head: Path          # a tagging head on colour_hist's codes
    cfg: dict


def _painting(rng: np.random.Generator, base: np.ndarray, size: int = 48) -> np.ndarray:
    """Stripes in two shades of a group's colour, with noise: groups differ by palette."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    wave = np.sin(2 * np.pi * rng.uniform(2, 6) * (xx * rng.uniform(-1, 1) + yy)) > 0
    image = np.where(wave[..., None], base, base * 0.6) + rng.normal(0, 8, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_collection(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(7)
    folder = root / "art"
    bases = {"g0": np.array([40, 60, 200.0]), "g1": np.array([200, 60, 40.0]),
             "g2": np.array([60, 190, 60.0])}
    for group, base in bases.items():
        (folder / group).mkdir(parents=True)
        for i in range(PER_GROUP):
            Image.fromarray(_painting(rng, base)).save(folder / group / f"img{i}.jpg", quality=92)
    outside = root / "private" / "secret.jpg"
    outside.parent.mkdir()
    Image.fromarray(_painting(rng, np.array([128, 128, 128.0]))).save(outside, quality=92)
    (folder / "g0" / "link.jpg").symlink_to(outside)
    return folder, outside


def embed(folder: Path, model: str, out: Path, cfg: dict) -> ModelInfo:
    """The files and state pipeline/embed.py writes for ``folder``, embedded in this process."""
    recipe = model_recipe([model], cfg)
    images = find_images(str(folder), cfg.embed.extensions)
    job = Job(cfg, recipe, images, out.resolve(), recipe.hash(cfg), str(folder))
    claim_output(job)
    net = build(recipe, cfg, "cpu")
    info = ModelInfo(net.name, job.model_hash, net.dim)
    write_file(file_path(out, 0), [i.id for i in images], [i.path for i in images],
               net.embed([i.path for i in images]), [""] * len(images), info)
    return info


def make_collection(root: Path, text_model: Path) -> Collection:
    folder, outside = write_collection(root)
    cfg = load_config(None, SMALL_EVAL)
    indexes = []
    for model, kind in (("baseline:colour_hist", "flat"), ("baseline:vgg_moments", "hnsw")):
        out = root / f"emb-{model.split(':')[1]}"
        info = embed(folder, model, out, cfg)
        assert search_command.main(["build", "--embeddings", str(out), "--kind", kind,
                                    *SMALL_EVAL]) == 0
        indexes.append(out / "index")
        if kind == "flat":
            head = _head(out, info, text_model, root / "heads" / f"{info.name}.pt")
    return Collection(folder, outside, indexes, head, cfg)


def _head(embeddings: Path, info: ModelInfo, text_model: Path, path: Path) -> Path:
    from stylecode.store import read_folder
    codes = read_folder(embeddings)
    tags = [GROUP_TAGS[item_id.split("/")[0]] for item_id in codes.ids]
    head = train_head(codes.codes, tags, TextEncoder(text_model), HeadConfig(epochs=30),
                      image_model=info.name, image_model_hash=info.hash)
    return head.save(path)
