"""The one image opener (common.images): the inputs a plain ``convert("RGB")`` gets wrong."""
import numpy as np
import pytest
from PIL import Image

from common.images import ImageError, open_image


def test_16_bit_greyscale_keeps_its_tones(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")          # what PIL hands a naive converter
    image = np.asarray(open_image(path))
    assert image.shape == (64, 64, 3)
    assert image[..., 0].min() == 0 and image[..., 0].max() == 255
    assert abs(image.mean() - 127.5) < 2         # a ramp, not 99% white


def test_exif_orientation_is_applied(tmp_path):
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = 255                           # white left half as stored
    exif = Image.Exif()
    exif[0x0112] = 6                             # "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(wide).save(path, exif=exif)
    image = np.asarray(open_image(path))
    assert image.shape == (40, 20, 3)            # displayed upright: taller than wide
    assert image[:15].mean() > 200 and image[-15:].mean() < 50


def test_transparency_is_composited_over_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)       # fully transparent black
    path = tmp_path / "clear.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    assert np.asarray(open_image(path)).min() == 255


@pytest.mark.parametrize("size", [(1, 1), (1, 80)])
def test_tiny_images_are_refused_with_the_file_named(tmp_path, size):
    path = tmp_path / "speck.png"
    Image.new("RGB", size).save(path)
    with pytest.raises(ImageError, match=r"speck\.png: .* too small"):
        open_image(path)


def test_oversized_images_are_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(path)
    with pytest.raises(ImageError, match=r"big\.png: 300x300 pixels is over the limit"):
        open_image(path, max_pixels=50_000)


def test_unreadable_files_name_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8 not really")
    with pytest.raises(ImageError, match=r"broken\.jpg: cannot read the image"):
        open_image(path)
    with pytest.raises(ImageError, match="missing.png"):
        open_image(tmp_path / "missing.png")
