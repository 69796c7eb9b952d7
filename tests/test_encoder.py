"""The style encoder: unit-norm codes, branch switches, weight files, checkpoint reload."""

import pytest
import timm
import torch

from common.config import ConfigError, load_config
from models.checkpoint import load_encoder
from models.encoder import ModelConfigError, StyleEncoder, build_encoder, saved_encoder
from stylize.parts.vgg import vgg_normalised

SMALL = ["train.image_size=32", "train.model.vit.patch_size=8", "train.model.vgg.max_layer=relu2_1",
         "train.model.embed_dim=32", "train.model.fusion_hidden=64", "train.model.style_net.residual=false"]
RESIDUAL = ["train.model.embed_dim=128", "train.model.style_net.residual=true",
            "train.model.style_net.style_size=32"]


def small_cfg(*overrides: str) -> dict:
    return load_config(None, SMALL + list(overrides))


def images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("vit, vgg, style_net", [(True, True, True), (True, True, False),
                                                  (True, False, False), (False, True, False),
                                                  (False, False, True)])
def test_codes_are_unit_norm_for_every_branch_mix(vit, vgg, style_net):
    cfg = small_cfg(f"train.model.vit.enabled={vit}", f"train.model.vgg.enabled={vgg}",
                    f"train.model.style_net.enabled={style_net}")
    encoder = build_encoder(cfg).eval()
    codes = encoder(images())
    assert codes.shape == (3, 32)
    assert torch.allclose(codes.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (encoder.vit is not None) == vit and (encoder.vgg is not None) == vgg
    assert (encoder.style_net is not None) == style_net


def test_all_branches_off_is_an_error():
    off = ["train.model.vit.enabled=false", "train.model.vgg.enabled=false"]
    with pytest.raises(ConfigError, match="enable at least one branch"):   # the schema checks it
        small_cfg(*off, "train.model.style_net.enabled=false")


def test_style_network_is_frozen_and_its_norm_trains():
    encoder = build_encoder(small_cfg("train.model.vit.enabled=false", "train.model.vgg.enabled=false"))
    assert [name for name, _ in encoder.style_net.named_parameters()] == ["norm.weight", "norm.bias"]
    encoder(images()).sum().backward()
    assert encoder.style_net.norm.weight.grad.abs().sum() > 0
    # its vectors are the pretrained network's, at the configured size
    vectors = encoder.style_net.network.style_vectors(images())
    assert encoder.style_net.network.style_size == 128 and vectors.shape == (3, 100)
    expected = torch.nn.functional.layer_norm(vectors, (100,))
    assert torch.allclose(encoder.style_net(images()), expected, atol=1e-5)


def test_style_network_files_come_from_the_magenta_entry(tmp_path):
    missing = tmp_path / "none.onnx"
    with pytest.raises(FileNotFoundError, match="none.onnx"):
        build_encoder(small_cfg(f"stylize.methods.magenta.predict_model={missing}"))


def test_frozen_vgg_gets_no_gradient_and_trainable_does():
    for trainable in (False, True):
        encoder = build_encoder(small_cfg("train.model.vit.enabled=false",
                                          f"train.model.vgg.trainable={trainable}"))
        encoder(images()).sum().backward()
        conv = encoder.vgg.features.body[0]
        assert (conv.weight.grad is not None) == trainable
        assert encoder.fusion[0].weight.grad is not None


def test_vgg_normalised_file_loads_into_the_branch(tmp_path):
    full = vgg_normalised()  # all 53 modules, as the published file
    with torch.no_grad():
        for param in full.parameters():
            param.normal_()
    path = tmp_path / "vgg_normalised.pth"
    torch.save(full.state_dict(), path)
    random_init = build_encoder(small_cfg("train.model.vit.enabled=false"))
    loaded = build_encoder(small_cfg("train.model.vit.enabled=false", f"train.model.vgg.weights={path}"))
    body = loaded.vgg.features.body
    assert len(body) == 11  # 1x1 conv, relu1_1, relu1_2, pool, relu2_1: the truncated network
    for key, value in body.state_dict().items():
        assert torch.equal(value, full.state_dict()[key])
        assert not torch.equal(value, random_init.vgg.features.body.state_dict()[key])


def test_vgg_file_with_the_wrong_layout_is_rejected(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"0.weight": torch.zeros(3, 3, 1, 1)}, path)
    with pytest.raises(ModelConfigError, match="does not fit the network"):
        build_encoder(small_cfg("train.model.vit.enabled=false", f"train.model.vgg.weights={path}"))


def test_timm_checkpoint_loads_through_pretrained_file(tmp_path):
    # Saved at another resolution: timm must resample the position embeddings on load.
    source = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=16, patch_size=8)
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)
    cfg = small_cfg("train.model.vgg.enabled=false", f"train.model.vit.pretrained_file={path}")
    net = build_encoder(cfg).vit.net
    assert net.pos_embed.shape == (1, 1 + 16, 192)  # 32 px / patch 8 = 4 x 4 tokens + cls
    assert torch.equal(net.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert torch.equal(net.cls_token, source.cls_token)


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelConfigError, match="not found"):
        build_encoder(small_cfg(f"train.model.vit.pretrained_file={tmp_path / 'none.pth'}"))


def test_load_encoder_rebuilds_the_model_from_a_checkpoint(tmp_path):
    cfg = small_cfg()
    encoder = build_encoder(cfg).eval()
    path = tmp_path / "last.pt"
    torch.save({"model": encoder.state_dict(), "config": cfg.model_dump(), "step": 3}, path)
    loaded, loaded_cfg = load_encoder(path)
    assert not loaded.training and loaded_cfg == cfg.model_dump()
    with torch.no_grad():
        assert torch.allclose(loaded(images()), encoder(images()), atol=1e-6)
        # Other resolutions are resized to the training one.
        assert loaded(images(2, 48)).shape == (2, 32)


def test_encoder_class_takes_the_model_section():
    cfg = small_cfg("train.model.vgg.enabled=false")
    encoder = StyleEncoder(cfg.train.model, 32)
    assert encoder.image_size == 32 and encoder.vgg is None


def test_vit_depth_overrides_the_named_architecture_and_survives_a_checkpoint(tmp_path):
    assert len(build_encoder(small_cfg()).vit.net.blocks) == 12  # vit_tiny's own depth
    cfg = small_cfg("train.model.vit.depth=2")
    encoder = build_encoder(cfg)
    assert len(encoder.vit.net.blocks) == 2
    torch.save({"model": encoder.state_dict(), "config": cfg.model_dump(), "step": 0}, tmp_path / "last.pt")
    rebuilt, _ = load_encoder(tmp_path / "last.pt")
    assert len(rebuilt.vit.net.blocks) == 2


def test_untrained_encoder_ranks_exactly_as_its_style_network():
    encoder = build_encoder(small_cfg(*RESIDUAL)).eval()
    batch = images(8)
    with torch.no_grad():
        codes = encoder(batch)
        vectors = torch.nn.functional.normalize(encoder.style_net.vectors(batch), dim=1)
    # the code is the normalised style vector, padded with zeros
    assert torch.allclose(codes[:, :100], vectors, atol=1e-6)
    assert torch.equal(codes[:, 100:], torch.zeros(8, 28))
    # so every image's neighbours come in the same order
    mine, theirs = codes @ codes.T, vectors @ vectors.T
    assert torch.equal(mine.argsort(dim=1, stable=True), theirs.argsort(dim=1, stable=True))


def test_training_moves_the_residual_code_where_the_loss_pulls():
    encoder = build_encoder(small_cfg(*RESIDUAL))
    batch = images(6)
    before = encoder(batch).detach()
    optimiser = torch.optim.SGD(encoder.parameters(), lr=0.5)
    # pull images 0 and 1 together: one step moves the code, through the projection and the MLP
    loss = -(encoder(batch)[0] * encoder(batch)[1]).sum()
    loss.backward()
    assert encoder.start.project.weight.grad.abs().sum() > 0
    assert encoder.fusion[-1].weight.grad.abs().sum() > 0
    optimiser.step()
    after = encoder(batch).detach()
    assert not torch.allclose(before, after)
    assert (after[0] @ after[1]) > (before[0] @ before[1])


def test_residual_needs_room_for_the_style_vector():
    with pytest.raises(ConfigError, match="embed_dim >= 100"):
        small_cfg("train.model.style_net.residual=true")           # embed_dim 32
    small_cfg("train.model.style_net.residual=true", "train.model.style_net.enabled=false")


def test_a_checkpoint_without_the_residual_key_loads_as_before(tmp_path):
    cfg = small_cfg().model_dump()   # as a checkpoint records it
    del cfg["train"]["model"]["style_net"]["residual"]   # a checkpoint of an earlier version
    encoder = saved_encoder(cfg)
    assert encoder.start is None
