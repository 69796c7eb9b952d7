"""Checkpoint-compatible NST methods: published file names and key layouts, strict loading with
clear errors, and the published inference on small real images (CPU, random weights)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from conftest import write_images_manifest
from shards.codec import pil_to_tensor
from stylize import create_method
from stylize.adain import match_colours
from stylize.cast import CastDecoder, CastEncoder
from stylize.parts.checkpoint import CheckpointError, load_into, load_state
from stylize.parts.adain_family import adain, adain_decoder, mean_std
from stylize.pama import PAMABlock
from stylize.sanet import SANetTransform
from stylize.parts.vgg import vgg_normalised

# A few keys (and shapes) of each published file, as their projects' code names them.
OFFICIAL_KEYS = {
    "vgg_normalised.pth": (34, {"0.weight": (3, 3, 1, 1), "2.weight": (64, 3, 3, 3),
                                "29.weight": (512, 256, 3, 3), "51.bias": (512,)}),
    "decoder.pth": (18, {"1.weight": (256, 512, 3, 3), "5.bias": (256,),
                         "14.weight": (128, 256, 3, 3), "28.weight": (3, 64, 3, 3)}),
    "transformer_iter_500000.pth": (18, {"sanet4_1.f.weight": (512, 512, 1, 1),
                                         "sanet4_1.out_conv.bias": (512,),
                                         "sanet5_1.h.weight": (512, 512, 1, 1),
                                         "merge_conv.weight": (512, 512, 3, 3)}),
    "PAMA1.pth": (24, {"conv_in.weight": (512, 512, 3, 3), "attn.f.weight": (256, 512, 1, 1),
                       "attn.out_conv.weight": (512, 256, 1, 1),
                       "fuse.proj1.weight": (512, 1024, 1, 1),
                       "fuse.fuse5x.weight": (1, 512, 5, 5), "conv_out.bias": (512,)}),
    "latest_net_AE.pth": (20, {"enc_1.0.weight": (3, 3, 1, 1), "enc_1.2.weight": (64, 3, 3, 3),
                               "enc_2.1.weight": (64, 64, 3, 3), "enc_2.5.weight": (128, 64, 3, 3),
                               "enc_3.5.weight": (256, 128, 3, 3),
                               "enc_4.11.weight": (512, 256, 3, 3)}),
    "latest_net_Dec_B.pth": (18, {"decoder.1.weight": (256, 512, 3, 3),
                                  "decoder.28.bias": (3,)}),
}


def _random_state(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random weights that keep activations alive through deep stacks (scaled normal convs)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("weight") and value.dim() == 4:
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=generator) * (1.5 / fan_in) ** 0.5
        else:
            state[key] = torch.rand(value.shape, generator=generator) * 0.1
    return state


def _save(module: nn.Module, path: Path, seed: int) -> Path:
    torch.save(_random_state(module, seed), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """Every published file of every method, with random values, in one folder."""
    folder = tmp_path_factory.mktemp("checkpoints")
    _save(vgg_normalised(), folder / "vgg_normalised.pth", 0)
    _save(adain_decoder(), folder / "decoder.pth", 1)
    _save(adain_decoder(), folder / "decoder_iter_500000.pth", 2)
    _save(SANetTransform(), folder / "transformer_iter_500000.pth", 3)
    # PAMA's encoder file may hold the whole VGG: more keys than the 44 modules it loads.
    _save(vgg_normalised(), folder / "encoder.pth", 4)
    for number in (1, 2, 3):
        _save(PAMABlock(), folder / f"PAMA{number}.pth", 4 + number)
    _save(CastEncoder(), folder / "latest_net_AE.pth", 8)
    _save(CastDecoder(), folder / "latest_net_Dec_B.pth", 9)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 64 px content JPEGs and one 80 px style JPEG, read back from disk."""
    folder = tmp_path_factory.mktemp("images")
    write_images_manifest(folder, "content", 2, 64, seed=1)
    write_images_manifest(folder, "style", 1, 80, seed=2)
    contents = torch.stack([pil_to_tensor(Image.open(p))
                            for p in sorted((folder / "content").glob("*.jpg"))])
    style = pil_to_tensor(Image.open(folder / "style" / "style0.jpg"))
    return contents, style


@pytest.fixture(scope="module")
def method(checkpoints):
    """Each method built once from the checkpoint folder (loading the VGG takes a while)."""
    built = {}

    def get(name: str, **options):
        key = (name, *sorted(options.items()))
        if key not in built:
            built[key] = create_method(name, dir=checkpoints, **options)
        return built[key]
    return get


@pytest.mark.parametrize("file_name", sorted(OFFICIAL_KEYS))
def test_checkpoint_files_have_the_published_layout(checkpoints, file_name):
    count, keys = OFFICIAL_KEYS[file_name]
    state = load_state(checkpoints / file_name)
    assert len(state) == count
    assert {key: tuple(state[key].shape) for key in keys} == keys


def _decoder_input(method, run) -> torch.Tensor:
    """The feature a method hands to its decoder during ``run()``."""
    captured = []
    handle = method.decoder.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    try:
        run()
    finally:
        handle.remove()
    return captured[0]


METHODS = ("adain", "sanet", "pama", "cast")


@pytest.mark.parametrize("name", METHODS)
def test_method_stylizes_a_batch_deterministically(method, images, name):
    contents, style = images
    # CAST works at 256 px as published (checked below); 64 px keeps this test fast.
    method = method(name, image_size=64) if name == "cast" else method(name)
    state = method.prepare_style(style)
    first = method.stylize(contents, state)
    assert first.shape == contents.shape and first.dtype == torch.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert first.std() > 1e-3, "random weights should still give a non-constant image"
    # The prepared style is reused as is: a second batch gives the same pixels.
    assert torch.equal(method.stylize(contents, state), first)
    # A different style changes the output.
    assert not torch.equal(method(contents, style.flip(-1)), first)


@pytest.mark.parametrize("name", ("adain", "sanet", "pama"))
def test_odd_sizes_come_back_at_the_content_size(method, images, name):
    contents, style = images
    odd = contents[:, :, :50, :58]  # not a multiple of 8 or 16
    assert method(name)(odd, style).shape == odd.shape


def test_adain_transfers_the_style_statistics(method, images):
    contents, style = images
    method = method("adain")
    features = _decoder_input(method, lambda: method(contents, style))
    style_mean, style_std = mean_std(method.encode(style[None]))
    mean, std = mean_std(features)
    torch.testing.assert_close(mean, style_mean.expand_as(mean), rtol=1e-4, atol=1e-4)
    # The std is the style's, up to the 1e-5 variance epsilon (added when normalising the
    # content and again when measuring): exact for varied channels, damped for flat ones.
    eps = 1e-5
    _, content_std = mean_std(method.encode(contents))
    expected = (style_std ** 2 * (1 - eps / content_std ** 2) + eps).sqrt()
    torch.testing.assert_close(std, expected, rtol=1e-3, atol=1e-5)
    assert (style_std > 3 * eps ** 0.5).sum() > 50, "the style should have varied channels"


def test_adain_strength_zero_decodes_the_content_features(method, images):
    contents, style = images
    method = method("adain")
    features = _decoder_input(method, lambda: method(contents, style, strength=0.0))
    assert torch.equal(features, method.encode(contents))
    half_way = _decoder_input(method, lambda: method(contents, style, strength=0.5))
    full = adain(method.encode(contents), *mean_std(method.encode(style[None])))
    torch.testing.assert_close(half_way, 0.5 * full + 0.5 * method.encode(contents))


def test_colour_matching_gives_the_target_colour_mean_and_covariance(images):
    contents, style = images
    matched = match_colours(style, contents[0])

    def moments(image):
        flat = image.reshape(3, -1).double()
        return flat.mean(dim=1), torch.cov(flat)

    for got, want in zip(moments(matched), moments(contents[0])):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)


def test_adain_preserve_color_recolours_the_style_per_content(checkpoints, method, images):
    contents, style = images
    plain = method("adain")
    keeping = create_method("adain", dir=checkpoints, preserve_color=True)
    assert keeping.options()["preserve_color"] is True
    output = keeping(contents, style)
    assert output.shape == contents.shape
    # The recoloured style differs per content, so content 0 alone gives the same image.
    torch.testing.assert_close(keeping(contents[:1], style), output[:1])
    assert not torch.allclose(output, plain(contents, style))


def test_sanet_strength_zero_decodes_the_content_relu4_1(method, images):
    contents, style = images
    method = method("sanet")
    features = _decoder_input(method, lambda: method(contents, style, strength=0.0))
    assert torch.equal(features, method.encoder(contents)["relu4_1"])


def test_cast_uses_256px_inputs_in_minus_one_to_one(method, images):
    contents, style = images
    method = method("cast")
    seen = []
    hook = method.encoder.enc_1.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        method(contents, style)
    finally:
        hook.remove()
    assert [tuple(x.shape[-2:]) for x in seen] == [(256, 256), (256, 256)]
    assert all(x.min() >= -1.0 and x.max() <= 1.0 and x.min() < 0 for x in seen)


def test_cast_accepts_data_parallel_prefixes(checkpoints, tmp_path):
    wrapped = {f"module.{k}": v for k, v in load_state(checkpoints / "latest_net_AE.pth").items()}
    torch.save(wrapped, tmp_path / "ae.pth")
    encoder = CastEncoder()
    load_into(encoder, tmp_path / "ae.pth", prefix_map={"module.": ""})
    torch.testing.assert_close(encoder.enc_4[11].bias, wrapped["module.enc_4.11.bias"])


def test_explicit_paths_and_published_names_in_options(checkpoints, images):
    method = create_method("pama", encoder=checkpoints / "encoder.pth",
                           decoder=checkpoints / "decoder.pth", pama1=checkpoints / "PAMA1.pth",
                           pama2=checkpoints / "PAMA2.pth", pama3=checkpoints / "PAMA3.pth")
    assert method.options() == {"encoder": "encoder.pth", "decoder": "decoder.pth",
                                "pama1": "PAMA1.pth", "pama2": "PAMA2.pth", "pama3": "PAMA3.pth"}


def test_half_on_cpu_stays_fp32(checkpoints, images):
    contents, style = images
    method = create_method("adain", dir=checkpoints, half=True)
    assert method.half is False
    assert next(method.decoder.parameters()).dtype == torch.float32
    assert method(contents, style).dtype == torch.float32


# --- refusals -------------------------------------------------------------------------------

def _edited_copy(source: Path, target: Path, edit) -> Path:
    state = load_state(source)
    edit(state)
    torch.save(state, target)
    return target


def test_missing_file_names_the_path(checkpoints, tmp_path):
    missing = tmp_path / "nowhere" / "decoder.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        create_method("adain", vgg=checkpoints / "vgg_normalised.pth", decoder=missing)


def test_missing_option_and_missing_published_file_are_named(tmp_path):
    with pytest.raises(TypeError, match="transformer"):
        create_method("sanet", vgg="v.pth", decoder="d.pth")
    (tmp_path / "vgg_normalised.pth").touch()
    with pytest.raises(FileNotFoundError, match=r"decoder_iter_\*\.pth"):
        create_method("sanet", dir=tmp_path)


def test_renamed_key_is_refused_with_both_names(checkpoints, tmp_path):
    path = _edited_copy(checkpoints / "decoder.pth", tmp_path / "decoder.pth",
                        lambda s: s.update({"1.conv.weight": s.pop("1.weight")}))
    with pytest.raises(CheckpointError) as error:
        create_method("adain", vgg=checkpoints / "vgg_normalised.pth", decoder=path)
    message = str(error.value)
    assert str(path) in message and "'1.weight'" in message and "'1.conv.weight'" in message


def test_shape_mismatch_is_refused_with_the_key_and_shapes(checkpoints, tmp_path):
    path = _edited_copy(checkpoints / "PAMA2.pth", tmp_path / "PAMA2.pth",
                        lambda s: s.update({"attn.f.weight": torch.zeros(512, 512, 1, 1)}))
    with pytest.raises(CheckpointError, match=r"attn\.f\.weight: file \(512, 512, 1, 1\) vs "
                                              r"network \(256, 512, 1, 1\)"):
        create_method("pama", dir=checkpoints, pama2=path)


def test_non_strict_encoder_still_needs_its_own_keys(checkpoints, tmp_path):
    # PAMA's encoder file may hold extra layers, but not lack the ones it uses.
    path = _edited_copy(checkpoints / "encoder.pth", tmp_path / "encoder.pth",
                        lambda s: s.pop("29.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys 1 \('29\.bias'\)"):
        create_method("pama", dir=checkpoints, encoder=path)
    mismatched = _edited_copy(checkpoints / "encoder.pth", tmp_path / "encoder2.pth",
                              lambda s: s.update({"42.bias": torch.zeros(7)}))
    with pytest.raises(CheckpointError, match=r"42\.bias: file \(7,\)"):
        load_into(vgg_normalised(44), mismatched, strict=False)


def test_extra_keys_are_refused_when_strict(checkpoints, tmp_path):
    path = _edited_copy(checkpoints / "transformer_iter_500000.pth", tmp_path / "t.pth",
                        lambda s: s.update({"sanet6_1.f.weight": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys 1 \('sanet6_1\.f\.weight'\)"):
        load_into(SANetTransform(), path)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_state(path)


@pytest.mark.slow
def test_stage1_runs_end_to_end_with_the_checkpoint_methods(checkpoints, small_manifests, ray_env,
                                                            tmp_path):
    """The published-layout methods through the real Ray stage: trained with AdaIN, SANet and
    PAMA, CAST held out, as configs/bbst.yaml does (small images, CPU)."""
    import subprocess
    import sys

    from shards.reader import read_index, read_info

    content, style = small_manifests
    out = tmp_path / "shards"
    methods = {name: f"{{dir: {checkpoints}}}" for name in ("adain", "sanet", "pama", "cast")}
    overrides = {"data.content_manifest": content, "data.style_manifest": style,
                 **{f"stylize.methods.{k}": v for k, v in methods.items()},
                 "stylize.train_methods": "[adain,sanet,pama]", "stylize.held_out": "cast",
                 "stylize.image_size": 32, "stylize.style_image_size": 32, "stylize.crops_size": 16,
                 "stylize.test_fraction": 0.34, "stylize.train_contents_per_style": 2,
                 "stylize.test_contents_per_style": 2, "stylize.ray.num_actors": 1,
                 "stylize.ray.object_store_mb": 80}
    script = Path(__file__).resolve().parents[1] / "pipeline" / "stylize.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(out),
                             *[f"{k}={v}" for k, v in overrides.items()]],
                            cwd=tmp_path, env=ray_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for split in ("train", "test-adain", "test-sanet", "test-pama", "test-cast"):
        info = read_info(out / split)
        assert info["failed"] == 0 and info["images"] > 0
    rows = read_index(out / "train").to_pylist()
    assert {r["method"] for r in rows} <= {"adain", "sanet", "pama"}
    assert all("decoder" in r["params"] or "dec_b" in r["params"] or "pama1" in r["params"]
               for r in rows)
