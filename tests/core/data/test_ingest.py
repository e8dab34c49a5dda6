"""Importing photos: folders, zips and uploads; every rejection reason; conversions; dedupe; zip-slip."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.ingest import ImportLimits, import_paths, import_uploads
from core.errors import InvalidInput, UnknownTag

LIMITS = ImportLimits(min_side=32, max_bytes=200_000, max_pixels=1_000_000)


def png(color=(200, 30, 40), size=(40, 36), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


def raw_png(width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
    """A PNG written by hand: for what Pillow cannot save (16-bit RGB, a bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def files_in(store) -> list[Path]:
    return [p for p in store.images_dir.rglob("*") if p.is_file()]


def make_folder(root: Path) -> Path:
    for tag, colors in {"jeans": [(10, 20, 200), (20, 30, 190)], "shoes": [(200, 10, 10), (190, 20, 20), (180, 0, 0)]}.items():
        (root / tag).mkdir(parents=True)
        for i, color in enumerate(colors):
            (root / tag / f"{i}.png").write_bytes(png(color))
    (root / "jeans" / "notes.txt").write_text("not a photo")
    good = png((1, 2, 3))
    (root / "shoes" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "shoes" / ".DS_Store").write_bytes(b"\0\0junk")
    return root


def test_folder_of_tag_folders_then_again_is_all_duplicates(store, tmp_path):
    folder = make_folder(tmp_path / "photos")
    first = import_paths(store, [folder], limits=LIMITS)
    assert first["imported"] == 5 and first["duplicates"] == 0
    assert first["created_tags"] == ["jeans", "shoes"]
    assert store.tag_counts("jeans") == {"synthetic": 0, "real": 2, "test": 0}
    assert store.tag_counts("shoes")["real"] == 3
    reasons = {Path(r["path"]).name: r["reason"] for r in first["rejected"]}
    assert set(reasons) == {"notes.txt", "cut.png"}  # hidden files are skipped, not rejected
    assert reasons["notes.txt"].startswith("not an image")
    assert reasons["cut.png"].startswith("truncated image")
    assert len(first["images"]) == 5 and len(files_in(store)) == 5

    second = import_paths(store, [folder], limits=LIMITS)
    assert second["imported"] == 0 and second["duplicates"] == 5 and second["created_tags"] == []
    assert sorted(second["images"]) == sorted(first["images"])
    assert store.count_images() == 5 and len(files_in(store)) == 5
    assert store.get_tag("jeans")["prompt"] == ""  # created with an empty prompt


def test_explicit_tag_and_source_for_every_file(store, tmp_path):
    store.add_tag("jeans", "blue jeans")
    folder = make_folder(tmp_path / "photos")
    result = import_paths(store, [folder], tag="jeans", source="test", limits=LIMITS)
    assert result["imported"] == 5 and result["created_tags"] == []
    assert store.tag_counts("jeans") == {"synthetic": 0, "real": 0, "test": 5}
    row = store.get_image(result["images"][0])
    assert row["source"] == "test" and row["provenance"]["original_name"].endswith("0.png")
    assert row["provenance"]["imported_format"] == "PNG"


def test_unknown_explicit_tag_and_bad_source_import_nothing(store, tmp_path):
    folder = make_folder(tmp_path / "photos")
    with pytest.raises(UnknownTag, match="unknown tag 'pants'"):
        import_paths(store, [folder], tag="pants", limits=LIMITS)
    store.add_tag("jeans")
    with pytest.raises(InvalidInput, match="real, test or synthetic"):
        import_paths(store, [folder], tag="jeans", source="made-up", limits=LIMITS)
    with pytest.raises(InvalidInput, match="needs the tool that made them: --generator NAME"):
        import_paths(store, [folder], tag="jeans", source="synthetic", limits=LIMITS)
    assert store.count_images() == 0 and files_in(store) == []


def test_every_rejection_reason(store):
    store.add_tag("jeans")
    bomb = raw_png(20_000, 20_000, 8, 2, b"")  # 400 Mpx in a header: Pillow's own bomb check
    good = png()
    uploads = [
        ("notes.txt", b"hello, not a picture"),
        ("empty.png", b""),
        ("cut.png", good[: len(good) - 30]),
        ("bomb.png", bomb),
        ("big-canvas.png", png(size=(1100, 1000))),  # over LIMITS.max_pixels
        ("tiny.png", png(size=(31, 100))),
        ("huge.png", np.random.default_rng(0).integers(0, 255, 300_000, dtype=np.uint8).tobytes()),
        ("fine.png", good),
    ]
    result = import_uploads(store, uploads, tag="jeans", limits=LIMITS)
    reasons = {r["path"]: r["reason"] for r in result["rejected"]}
    assert result["imported"] == 1 and len(reasons) == 7
    assert reasons["notes.txt"] == "not an image (unknown or unsupported file format)"
    assert reasons["empty.png"] == "not an image (empty file)"
    assert reasons["cut.png"].startswith("truncated")
    assert reasons["bomb.png"].startswith("decompression bomb") and "400000000" in reasons["bomb.png"]
    assert reasons["big-canvas.png"] == ("decompression bomb: 1100×1000 = 1,100,000 pixels is over the limit "
                                         "of 1,000,000")
    assert reasons["tiny.png"] == "too small: 31×100, the shorter side must be at least 32 px"
    assert reasons["huge.png"] == "larger than the upload limit (0.3 MB > 0.2 MB)"
    assert store.count_images() == 1 and len(files_in(store)) == 1
    assert store.integrity_check() == "ok"


def test_loose_file_without_a_tag_is_rejected(store, tmp_path):
    (tmp_path / "a.png").write_bytes(png())
    result = import_paths(store, [tmp_path / "a.png", tmp_path / "missing.png"], limits=LIMITS)
    reasons = [r["reason"] for r in result["rejected"]]
    assert reasons == ["no tag: choose a tag, or put the file in a tag-named subfolder", "no such file or folder"]
    assert store.tag_names() == []


def test_limits_come_from_settings(store, monkeypatch):
    store.add_tag("jeans")
    monkeypatch.setenv("SYNTHLAB_MIN_SIDE", "50")
    result = import_uploads(store, [("a.png", png(size=(40, 40)))], tag="jeans")
    assert result["rejected"][0]["reason"].endswith("at least 50 px")
    monkeypatch.setenv("SYNTHLAB_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(InvalidInput, match="SYNTHLAB_MAX_IMAGE_BYTES must be a whole number"):
        import_uploads(store, [("a.png", png())], tag="jeans")


def test_bad_folder_name_as_tag(store, tmp_path):
    (tmp_path / "photos" / "bad:name").mkdir(parents=True)
    (tmp_path / "photos" / "bad:name" / "a.png").write_bytes(png())
    (tmp_path / "photos" / "ok").mkdir()
    (tmp_path / "photos" / "ok" / "a.png").write_bytes(png((5, 5, 5)))
    result = import_paths(store, [tmp_path / "photos"], limits=LIMITS)
    assert result["imported"] == 1 and store.tag_names() == ["ok"]
    assert "cannot be a tag" in result["rejected"][0]["reason"]


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def test_zip_of_tag_folders_in_a_wrapping_folder(store, tmp_path):
    archive = make_zip({
        "clothes/jeans/a.png": png((1, 1, 200)),
        "clothes/jeans/b.jpg": png((2, 2, 200)),
        "clothes/shoes/sub/c.png": png((200, 1, 1)),
        "__MACOSX/clothes/jeans/._a.png": b"resource fork",
        "clothes/readme.md": b"# photos",
    })
    path = tmp_path / "photos.zip"
    path.write_bytes(archive)
    result = import_paths(store, [path], source="test", limits=LIMITS)
    assert result["imported"] == 3 and result["created_tags"] == ["jeans", "shoes"]
    assert store.tag_counts("shoes")["test"] == 1 and store.tag_counts("jeans")["test"] == 2
    assert [r["path"] for r in result["rejected"]] == [f"{path}!clothes/readme.md"]
    # the same zip uploaded: all duplicates, nothing new
    again = import_uploads(store, [("photos.zip", archive)], source="test", limits=LIMITS)
    assert again["imported"] == 0 and again["duplicates"] == 3


def test_zip_slip_entries_are_refused_and_nothing_is_extracted(store, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    archive = make_zip({
        "../evil.png": png((9, 9, 9)),
        "/abs/evil2.png": png((8, 8, 8)),
        "jeans/../../evil3.png": png((7, 7, 7)),
        "C:/windows/evil4.png": png((6, 6, 6)),
        "jeans\\..\\..\\evil5.png": png((5, 5, 5)),
        "jeans/fine.png": png((4, 4, 4)),
        "jeans/inner.zip": make_zip({"jeans/x.png": png()}),
    })
    before = sorted(p for p in tmp_path.rglob("*"))
    result = import_uploads(store, [("upload.zip", archive)], limits=LIMITS)
    assert result["imported"] == 1
    reasons = {r["path"].split("!", 1)[1]: r["reason"] for r in result["rejected"]}
    for name in ("../evil.png", "/abs/evil2.png", "jeans/../../evil3.png", "C:/windows/evil4.png",
                 "jeans\\..\\..\\evil5.png"):
        assert reasons[name] == "unsafe path in zip (absolute or '..': zip-slip), refused"
    assert reasons["jeans/inner.zip"] == "a zip inside a zip is not opened"
    assert sorted(p for p in tmp_path.rglob("*") if store.root not in p.parents and p != store.root) == \
        [p for p in before if store.root not in p.parents and p != store.root]
    assert not list(Path("/").glob("evil*.png")) and not list(Path("/abs").glob("*"))


def test_a_broken_zip_is_one_rejection(store):
    result = import_uploads(store, [("photos.zip", b"PK\x03\x04 definitely not a zip")], tag=None, limits=LIMITS)
    assert result["imported"] == 0
    assert result["rejected"][0]["reason"].startswith("not a readable zip file")


def test_duplicates_within_one_upload_and_relabel_conflicts(store):
    store.add_tag("jeans")
    store.add_tag("shoes")
    same = png((3, 4, 5))
    result = import_uploads(store, [("a.png", same), ("copy of a.png", same)], tag="jeans", limits=LIMITS)
    assert (result["imported"], result["duplicates"], len(result["images"])) == (1, 1, 1)
    as_test = import_uploads(store, [("a.png", same)], tag="jeans", source="test", limits=LIMITS)
    assert as_test["imported"] == 0 and as_test["duplicates"] == 0
    assert as_test["rejected"][0]["reason"] == "the same image is already stored as real 'jeans' (not relabelled)"
    as_shoes = import_uploads(store, [("a.png", same)], tag="shoes", limits=LIMITS)
    assert "already stored as real 'jeans'" in as_shoes["rejected"][0]["reason"]
    assert store.get_image(result["images"][0])["source"] == "real"


def stored_pixels(store, result) -> np.ndarray:
    (image_id,) = result["images"]
    row = store.get_image(image_id)
    with Image.open(row["path"]) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def upload_one(store, name, data):
    if "jeans" not in store.tag_names():
        store.add_tag("jeans")
    result = import_uploads(store, [(name, data)], tag="jeans", limits=LIMITS)
    assert result["imported"] == 1, result["rejected"]
    return stored_pixels(store, result)


def test_sixteen_bit_greyscale_is_scaled(store):
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), 0x8000, np.uint16)).save(buf, "PNG")
    pixels = upload_one(store, "grey16.png", buf.getvalue())
    assert abs(int(pixels[0, 0, 0]) - 128) <= 1 and (pixels[..., 0] == pixels[..., 2]).all()


def test_sixteen_bit_rgb(store):
    row = b"\x00" + b"\xAB\xCD\x12\x34\xFF\xFF" * 40
    pixels = upload_one(store, "rgb16.png", raw_png(40, 40, 16, 2, row * 40))
    assert tuple(pixels[0, 0]) == (0xAB, 0x12, 0xFF)


def test_cmyk_jpeg_becomes_rgb(store):
    buf = io.BytesIO()
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(buf, "JPEG", quality=95)
    r, g, b = upload_one(store, "cmyk.jpg", buf.getvalue())[20, 20].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_alpha_is_flattened_on_white(store):
    im = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    im.paste((0, 0, 255, 255), (0, 0, 20, 40))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    pixels = upload_one(store, "alpha.png", buf.getvalue())
    assert tuple(pixels[5, 5]) == (0, 0, 255) and tuple(pixels[5, 35]) == (255, 255, 255)


def test_palette_with_transparency(store):
    im = Image.new("P", (40, 40), 0)
    im.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    im.paste(1, (0, 0, 40, 20))
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=0)
    pixels = upload_one(store, "palette.png", buf.getvalue())
    assert tuple(pixels[5, 5]) == (0, 200, 0) and tuple(pixels[35, 5]) == (255, 255, 255)


def test_greyscale_gif_first_frame(store):
    buf = io.BytesIO()
    Image.new("L", (40, 40), 77).save(buf, "GIF")
    assert tuple(upload_one(store, "grey.gif", buf.getvalue())[0, 0]) == (77, 77, 77)


def test_exif_orientation_is_applied(store):
    im = Image.new("RGB", (80, 40), (255, 0, 0))
    im.paste((0, 0, 255), (40, 0, 80, 40))  # red left, blue right as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    pixels = upload_one(store, "rotated.jpg", buf.getvalue())
    assert pixels.shape == (80, 40, 3)  # portrait now
    top, bottom = pixels[10, 20].astype(int), pixels[70, 20].astype(int)
    assert top[0] > 200 and top[2] < 60  # stored-left (red) is on top after a clockwise turn
    assert bottom[2] > 200 and bottom[0] < 60


def test_same_pixels_different_metadata_is_one_image(store):
    plain = png((12, 34, 56))
    im = Image.new("RGB", (40, 36), (12, 34, 56))
    buf = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "exported by a camera app")
    im.save(buf, "PNG", pnginfo=info, dpi=(300, 300))
    result = import_uploads(store, [("a.png", plain), ("b.png", buf.getvalue())], tag=None, limits=LIMITS)
    assert result["rejected"][0]["reason"].startswith("no tag")
    store.add_tag("jeans")
    result = import_uploads(store, [("a.png", plain), ("b.png", buf.getvalue())], tag="jeans", limits=LIMITS)
    assert (result["imported"], result["duplicates"]) == (1, 1)
