"""The Python API (stylecode): the same codes as the evaluation's embedders, fused pairs,
tensors, and hashes that follow what the codes mean."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylecode
from common.config import load_config
from common.images import open_image
from conftest import write_images_manifest
from evaluation.models import build_models
from models.fuse import fuse
from shards.codec import pil_to_tensor
from stylecode.identity import ModelSpec, Recipe
from test_eval_run import MODEL_OVERRIDES, _write_checkpoint

SMALL_EVAL = ["eval.image_size=32", "eval.gram_channels=8", "eval.gram_layers=[relu1_1,relu2_1]"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("api")
    manifest = write_images_manifest(root, "content", 6, 48, seed=3)
    paths = sorted(str(p) for p in (manifest.parent / "content").glob("*.jpg"))
    checkpoint = _write_checkpoint(root / "run" / "checkpoints" / "last.pt", MODEL_OVERRIDES)
    return {"paths": paths, "checkpoint": checkpoint, "cfg": load_config(None, SMALL_EVAL)}


def _evaluation_codes(checkpoint: Path | None, baseline: str | None,
                      images: list[Image.Image]) -> np.ndarray:
    """Codes as pipeline/eval.py computes them."""
    cfg = load_config(None, SMALL_EVAL + [f"eval.baselines=[{baseline or ''}]"])
    model, = build_models([str(checkpoint)] if checkpoint else [], cfg, CPU)
    return model.embed(images)[model.names[0]]


def test_checkpoint_codes_equal_evaluation_codes(inputs):
    model = stylecode.load(inputs["checkpoint"], device="cpu")
    images = [open_image(path) for path in inputs["paths"]]
    codes = model.embed(inputs["paths"])   # one batch, as evaluation's: the very same floats
    np.testing.assert_array_equal(codes, _evaluation_codes(inputs["checkpoint"], None, images))
    np.testing.assert_array_equal(model.embed(images), codes)
    # Other batch compositions may differ in the last bits (another BLAS path).
    np.testing.assert_allclose(model.embed(inputs["paths"], batch_size=4), codes, atol=1e-6)
    assert codes.dtype == np.float32 and codes.shape == (6, model.dim) == (6, 16)
    np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1.0, rtol=1e-5)
    as_torch = model.embed(images[0], as_torch=True)
    assert isinstance(as_torch, torch.Tensor) and as_torch.shape == (1, 16)
    np.testing.assert_allclose(as_torch.numpy(), codes[:1], atol=1e-6)
    assert model.name == "run"   # RUN/checkpoints/last.pt, as evaluation names it
    assert model.hash == hashlib.sha256(inputs["checkpoint"].read_bytes()).hexdigest()[:16]


def test_baseline_codes_equal_evaluation_codes(inputs):
    model = stylecode.load("baseline:vgg_gram", config=inputs["cfg"], device="cpu")
    images = [open_image(path) for path in inputs["paths"]]
    np.testing.assert_array_equal(model.embed(inputs["paths"]),
                                  _evaluation_codes(None, "vgg_gram", images))
    assert model.name == "vgg_gram"


def test_tensors_are_prepared_like_images(inputs):
    model = stylecode.load(inputs["checkpoint"], device="cpu")
    images = [open_image(path).resize((32, 32), Image.BICUBIC) for path in inputs["paths"][:3]]
    batch = torch.stack([pil_to_tensor(image) for image in images])
    np.testing.assert_array_equal(model.embed(batch), model.embed(images))
    np.testing.assert_array_equal(model.embed(list(batch)), model.embed(images))
    # Another size is resized by the model; the codes stay close to the PIL route's.
    large = torch.nn.functional.interpolate(batch, size=(64, 64), mode="bilinear")
    assert (model.embed(large) * model.embed(images)).sum(1).min() > 0.99
    with pytest.raises(stylecode.StyleCodeError, match=r"\(3, H, W\).*\(1, 32, 32\)"):
        model.embed(torch.zeros(1, 32, 32))


def test_fused_pair_is_the_weighted_fusion_of_its_parts(inputs):
    cfg = inputs["cfg"]
    fused = stylecode.load(inputs["checkpoint"], "baseline:colour_hist", weights=(1, 0.5),
                           config=cfg, device="cpu")
    parts = [stylecode.load(spec, config=cfg, device="cpu").embed(inputs["paths"])
             for spec in (inputs["checkpoint"], "baseline:colour_hist")]
    np.testing.assert_array_equal(fused.embed(inputs["paths"]), fuse(*parts, 1, 0.5))
    assert fused.dim == 16 + 8 ** 3 and fused.name == "run+colour_hist"
    swapped = Recipe.parse([inputs["checkpoint"], "baseline:colour_hist"], (0.5, 1))
    assert swapped.hash(cfg) != fused.hash
    with pytest.raises(stylecode.StyleCodeError, match="weights"):
        stylecode.load(inputs["checkpoint"], "baseline:colour_hist", weights=(0, 0), config=cfg)


def test_baseline_hash_follows_what_the_codes_depend_on(tmp_path):
    base = load_config()
    same = stylecode.baseline_hash("vgg_moments", base)
    assert same == stylecode.baseline_hash("vgg_moments", load_config(
        None, ["eval.batch_size=3", "eval.tagging.head.epochs=1", "eval.fused=[]"]))
    assert same != stylecode.baseline_hash("vgg_gram", base)
    assert same != stylecode.baseline_hash("vgg_moments", load_config(None, ["eval.moments_max_layer=relu3_1"]))
    assert same != stylecode.baseline_hash("vgg_moments", load_config(None, ["seed=1"]))
    weights = tmp_path / "vgg.pth"
    weights.write_bytes(b"one")
    named = load_config(None, [f"train.model.vgg.weights={weights}"])
    before = stylecode.baseline_hash("vgg_moments", named)
    weights.write_bytes(b"two")   # replaced in place: another model under the same path
    assert stylecode.baseline_hash("vgg_moments", named) != before


def test_checkpoint_hash_ignores_the_name(inputs):
    path = inputs["checkpoint"]
    assert stylecode.checkpoint_hash(path) == ModelSpec.parse(f"other={path}").hash(None)
    assert ModelSpec.parse(f"other={path}").name == "other"
    assert str(ModelSpec.parse("baseline:vit_raw")) == "baseline:vit_raw"


def test_errors_name_what_is_wrong(inputs, tmp_path):
    with pytest.raises(stylecode.StyleCodeError, match="unknown baseline 'nope'.*vgg_moments"):
        stylecode.load("baseline:nope")
    with pytest.raises(stylecode.StyleCodeError, match=f"file not found: {tmp_path / 'gone.pt'}"):
        stylecode.load(tmp_path / "gone.pt")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    model = stylecode.load(inputs["checkpoint"], device="cpu")
    with pytest.raises(stylecode.ImageError, match="broken.jpg"):
        model.embed([inputs["paths"][0], broken])
    with pytest.raises(stylecode.StyleCodeError, match="fused pair"):
        stylecode.load(inputs["checkpoint"], weights=(1, 1))


# The baselines' hashes as the plain-dict config gave them: existing embeddings and indexes
# name their models by these, so the typed config must hash to the same bytes.
KNOWN_BASELINE_HASHES = {
    (): {"colour_hist": "e104e48b6b07a815", "magenta_style": "f1fc60393be2e297",
         "vgg_gram": "e3ac24de1b7943b3", "vgg_moments": "4ad53f023f9ee5c6",
         "vit_raw": "7a34a3c211d9c020"},
    ("seed=1", "eval.gram_channels=16"): {
        "colour_hist": "50253b7702003b37", "magenta_style": "53c1844ccd59db42",
        "vgg_gram": "1489f30da7a093c1", "vgg_moments": "4c2ccbb314ab85c5",
        "vit_raw": "b3f7a50ff95da3ab"},
}


@pytest.mark.parametrize("overrides", list(KNOWN_BASELINE_HASHES))
def test_baseline_hashes_are_those_of_the_plain_dict_config(overrides):
    cfg = load_config(None, list(overrides))
    hashes = {name: stylecode.baseline_hash(name, cfg) for name in KNOWN_BASELINE_HASHES[overrides]}
    assert hashes == KNOWN_BASELINE_HASHES[overrides]
