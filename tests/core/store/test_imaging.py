"""The RGB normaliser and the resize/crop cache, on tiny images made here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidInput
from core.store import imaging


def three_bands(width: int = 80, height: int = 40) -> Image.Image:
    """Red left quarter, green middle half, blue right quarter."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 4] = (255, 0, 0)
    arr[:, width // 4: 3 * width // 4] = (0, 255, 0)
    arr[:, 3 * width // 4:] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.fixture
def stored(store):
    store.add_tag("jeans")
    image_id, _ = store.add_image(three_bands(), tag="jeans", source="synthetic", seed=1)
    return image_id


def test_crop_is_shorter_side_then_centre():
    out = imaging.resize(three_bands(), 16)
    assert out.size == (16, 16) and out.mode == "RGB"
    arr = np.asarray(out).astype(int)
    # the centre half of the width is green: a centre crop of a 2:1 image keeps only green
    assert (arr[:, :, 1] > 200).all() and (arr[:, :, 0] < 60).all() and (arr[:, :, 2] < 60).all()


def test_pad_letterboxes_on_white_and_stretch_ignores_aspect():
    padded = np.asarray(imaging.resize(three_bands(), 16, fit="pad"))
    assert padded.shape == (16, 16, 3)
    assert (padded[0] == 255).all() and (padded[-1] == 255).all()  # white bars above and below
    assert padded[8, 0, 0] > 200 and padded[8, -1, 2] > 200  # red left, blue right survive
    stretched = np.asarray(imaging.resize(three_bands(), 16, fit="stretch"))
    assert stretched.shape == (16, 16, 3) and stretched[8, 0, 0] > 200 and stretched[8, -1, 2] > 200


@pytest.mark.parametrize("size, fit, resample, message", [
    (8, "crop", "lanczos", "between 16 and 4096"),
    (5000, "crop", "lanczos", "between 16 and 4096"),
    (64.5, "crop", "lanczos", "whole number"),
    (64, "zoom", "lanczos", "fit must be one of"),
    (64, "crop", "cubic", "resample must be one of"),
])
def test_bad_resize_arguments(stored, store, size, fit, resample, message):
    with pytest.raises(InvalidInput, match=message):
        imaging.resized(store, stored, size, fit, resample)
    assert not (store.cache_dir / "resized").exists()


def test_resized_is_a_cache_keyed_by_size_fit_and_resample(store, stored):
    first = imaging.resized(store, stored, 32)
    path = imaging.cache_file(store, stored, 32)
    assert path.exists() and path.is_relative_to(store.cache_dir)
    assert first.size == (32, 32)
    # the second call reads the cache: prove it by planting a different (valid) entry
    Image.new("RGB", (32, 32), (1, 2, 3)).save(path)
    assert imaging.resized(store, stored, 32).getpixel((0, 0)) == (1, 2, 3)
    # other keys are other files
    assert imaging.cache_file(store, stored, 32, "pad") != path
    assert imaging.cache_file(store, stored, 32, "crop", "bicubic") != path
    imaging.resized(store, stored, 32, "pad", "bicubic")
    assert imaging.cache_file(store, stored, 32, "pad", "bicubic").exists()
    # safe to delete: rebuilt from the original, identical to the first result
    path.unlink()
    again = imaging.resized(store, stored, 32)
    assert np.array_equal(np.asarray(again), np.asarray(first))
    assert not list(path.parent.glob(".tmp-*"))


def test_a_corrupt_cache_entry_is_rebuilt(store, stored):
    good = np.asarray(imaging.resized(store, stored, 24))
    path = imaging.cache_file(store, stored, 24)
    path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert np.array_equal(np.asarray(imaging.resized(store, stored, 24)), good)
    with Image.open(path) as fixed:
        assert fixed.size == (24, 24)


def test_size_none_is_the_original_and_writes_no_cache(store, stored):
    original = imaging.resized(store, stored, None)
    assert original.size == (80, 40)
    assert imaging.resized_png(store, stored, None) == store.image_file(stored).read_bytes()
    assert not (store.cache_dir / "resized").exists()


def test_resized_png_matches_resized(store, stored):
    import io

    data = imaging.resized_png(store, stored, 20, "stretch")
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (20, 20)
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(imaging.resized(store, stored, 20, "stretch")))


def test_to_rgb_scales_wide_greyscale_instead_of_clipping():
    grey16 = Image.fromarray(np.full((4, 4), 4096, np.uint16))
    assert grey16.mode == "I;16"
    assert imaging.to_rgb(grey16).getpixel((0, 0)) == (16, 16, 16)  # clipping would give 255
    grey32 = Image.fromarray(np.full((4, 4), 65535, np.int32))
    assert grey32.mode == "I"
    assert imaging.to_rgb(grey32).getpixel((0, 0)) == (255, 255, 255)
    small = Image.fromarray(np.full((4, 4), 100, np.int32))
    assert imaging.to_rgb(small).getpixel((0, 0)) == (100, 100, 100)
    floats = Image.fromarray(np.full((4, 4), 0.5, np.float32))
    assert imaging.to_rgb(floats).getpixel((0, 0)) in ((127, 127, 127), (128, 128, 128))


def test_to_rgb_flattens_transparency_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    out = imaging.to_rgb(rgba)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((1, 1)) == (255, 255, 255)
    la = Image.new("LA", (4, 4), (0, 0))
    assert imaging.to_rgb(la).getpixel((0, 0)) == (255, 255, 255)
    bilevel = Image.new("1", (4, 4), 1)
    assert imaging.to_rgb(bilevel).getpixel((0, 0)) == (255, 255, 255)
