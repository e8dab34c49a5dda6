"""Bad input, as a user would type it: every case is refused with one clear line (exit 2, no traceback,
no JSON) and changes nothing — every row of every table and every file is as it was, and the store
passes its integrity checks. What must work (non-ASCII prompts, unusual but valid photos) is shown
working. Module tests cover the same checks in depth; this is the user-level table, in one place."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.store.database import Store
from tests.reliability.conftest import assert_consistent, cli, snapshot

ROOT = Path(__file__).resolve().parents[2]
HUGE = "a red shoe on a white background, " * 300          # 10 500 characters
SD = "{sd}"                                                 # replaced by the tiny Stable Diffusion folder


def gen(*extra: str) -> list[str]:
    return ["generate", "--tag", "jeans", "--count", "2", "--model", SD, "--steps", "1", *extra]


REFUSED = [
    # prompts
    pytest.param(["generate", "--tag", "blank", "--count", "1", "--model", SD], "tag 'blank' has no prompt",
                 id="empty-prompt"),
    pytest.param(["tags", "add", "big", "--prompt", HUGE], "prompt is longer than 10000 characters", id="huge-prompt"),
    pytest.param(["tags", "add", "jeans", "--update", "--prompt", HUGE], "prompt is longer than 10000 characters",
                 id="huge-prompt-on-update"),
    pytest.param(["tags", "add", "big", "--prompt", "shoes", "--negative", HUGE],
                 "negative prompt is longer than 10000 characters", id="huge-negative"),
    pytest.param(["tags", "add", "big", "--prompt", "red \x1b[31mshoes"], "control characters",
                 id="control-characters-in-prompt"),
    pytest.param(["tags", "add", "big", "--prompt", "{blue|black jeans"], "not valid variation syntax",
                 id="broken-variation-syntax"),
    # tag names
    pytest.param(["tags", "add", "a/b", "--prompt", "x"], "contains a path separator", id="tag-slash"),
    pytest.param(["tags", "add", "../../etc", "--prompt", "x"], "contains a path separator", id="tag-dotdot-path"),
    pytest.param(["tags", "add", "..", "--prompt", "x"], "tag name '..' is not allowed", id="tag-dotdot"),
    pytest.param(["tags", "add", "a\x07b", "--prompt", "x"], "contains a control character", id="tag-bell"),
    pytest.param(["tags", "add", "two\nlines", "--prompt", "x"], "contains a control character", id="tag-newline"),
    pytest.param(["tags", "add", "👟", "--prompt", "x"], "use letters, digits, spaces", id="tag-emoji"),
    pytest.param(["tags", "add", "shoes 👟", "--prompt", "x"], "use letters, digits, spaces", id="tag-with-emoji"),
    pytest.param(["tags", "add", "jeans", "--prompt", "x"], "tag 'jeans' already exists", id="tag-duplicate"),
    pytest.param(["tags", "add", " jeans ", "--prompt", "x"], "tag 'jeans' already exists", id="tag-duplicate-spaced"),
    pytest.param(["tags", "add", "   ", "--prompt", "x"], "tag name is empty", id="tag-empty"),
    pytest.param(["tags", "add", "x" * 65, "--prompt", "x"], "longer than 64 characters", id="tag-too-long"),
    pytest.param(["generate", "--tag", "nope", "--count", "1", "--model", SD], "unknown tag 'nope'",
                 id="tag-unknown"),
    # counts
    pytest.param(gen("--count=0"), "count must be between 1 and 100000, not 0", id="generate-count-0"),
    pytest.param(gen("--count=-3"), "count must be between 1 and 100000, not -3", id="generate-count-negative"),
    pytest.param(gen("--count=1000000000"), "count must be between 1 and 100000, not 1000000000",
                 id="generate-count-1e9"),
    pytest.param(["slice", "--name", "s", "--counts=0"], "counts must be whole numbers from 1 to 100000, not 0",
                 id="slice-count-0"),
    pytest.param(["slice", "--name", "s", "--counts=-3"], "counts must be whole numbers from 1 to 100000, not -3",
                 id="slice-count-negative"),
    pytest.param(["slice", "--name", "s", "--counts=1000000000"], "not 1000000000", id="slice-count-1e9"),
    pytest.param(["slice", "--name", "s", "--counts", "4", "--repeats", "0"], "repeats must be a whole number",
                 id="slice-repeats-0"),
    # sizes
    pytest.param(gen("--width", "100"), "width must be a multiple of 8, not 100 (try 96)",
                 id="width-not-multiple-of-8"),
    pytest.param(gen("--height", "130"), "height must be a multiple of 8, not 130", id="height-not-multiple-of-8"),
    pytest.param(gen("--width", "0"), "width must be between 32 and 2048, not 0", id="width-0"),
    pytest.param(gen("--height", "100000"), "height must be between 32 and 2048, not 100000", id="height-100000"),
    pytest.param(["slice", "--name", "s", "--counts", "4", "--size", "0"], "size must be between 16 and 4096 px, not 0",
                 id="slice-size-0"),
    pytest.param(["slice", "--name", "s", "--counts", "4", "--size", "100000"], "not 100000", id="slice-size-100000"),
    # not enough data
    pytest.param(["slice", "--name", "big", "--counts", "1000", "--real-fraction", "1", "--tags", "one,zero"],
                 "not enough images: tag 'one' has 8 real images, a slice of 1000 per tag at real fraction 1 needs "
                 "1000",
                 id="slice-larger-than-data"),
    pytest.param(["train", "--slices", "solo", "--encoder", "cnn-small"],
                 "has images of only one tag (zero): a classifier needs at least 2 tags", id="train-one-tag"),
    pytest.param(["train", "--slices", "nothing", "--encoder", "cnn-small"], "no slice 'nothing'", id="train-no-slice"),
    pytest.param(["evaluate"], "no test images: import some with `import --source test`", id="evaluate-no-test-images"),
    # models that do not exist
    pytest.param(gen("--model", "nobody/no-such-model"),
                 "model 'nobody/no-such-model' is not in the local Hugging Face cache",
                 id="model-unknown-hub-id"),
    pytest.param(gen("--model", "/nonexistent/stable-diffusion"), "no model folder at /nonexistent/stable-diffusion",
                 id="model-missing-folder"),
    pytest.param(["train", "--slices", "base", "--encoder", "nobody/no-such-encoder"],
                 "encoder 'nobody/no-such-encoder' is not a local folder", id="encoder-unknown-hub-id"),
    pytest.param(["train", "--slices", "base", "--encoder", "/nonexistent/encoder"], "/nonexistent/encoder",
                 id="encoder-missing-folder"),
    # Azure without settings
    pytest.param(["train", "--slices", "az", "--backend", "azure"], "VISION_TRAINING_ENDPOINT is not set",
                 id="azure-no-endpoint"),
]


@pytest.mark.parametrize("args, message", REFUSED)
def test_refused_with_one_clear_line_and_nothing_changed(seeded, tiny_sd, args, message):
    args = [tiny_sd if a == SD else a for a in args]
    before = snapshot(seeded)
    result = cli(seeded, *args, "--json")
    assert result.code == 2, result.err
    line = result.error_line
    assert line.startswith("error: ") and message in line, line
    assert result.out == ""
    assert snapshot(seeded) == before
    assert_consistent(seeded)


# -- Azure: a missing key, a wrong key, an endpoint nobody answers ------------------------------------

TRAINING_KEY = "tk-correct-0123456789abcdef"
WRONG_KEY = "tk-wrong-fedcba9876543210"
FAST_AZURE = {"SYNTHLAB_AZURE_RATE": "0", "SYNTHLAB_AZURE_BACKOFF": "0.01", "SYNTHLAB_AZURE_MAX_WAIT": "0.05",
              "SYNTHLAB_AZURE_RETRY_SECONDS": "1"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["missing-key", "wrong-key", "unreachable"])
def test_azure_settings_problems_are_refused_before_any_run_is_written(seeded, monkeypatch, case):
    from tests.fakes import FakeCustomVision

    for name, value in FAST_AZURE.items():
        monkeypatch.setenv(name, value)
    with FakeCustomVision(TRAINING_KEY, "pk-unused") as fake:
        endpoint = fake.endpoint if case != "unreachable" else f"http://127.0.0.1:{closed_port()}"
        monkeypatch.setenv("VISION_TRAINING_ENDPOINT", endpoint)
        if case != "missing-key":
            monkeypatch.setenv("VISION_TRAINING_KEY", WRONG_KEY if case == "wrong-key" else TRAINING_KEY)
        before = snapshot(seeded)
        result = cli(seeded, "train", "--slices", "az", "--backend", "azure", "--json")
        status = cli(seeded, "azure", "status", "--json") if case == "wrong-key" else None
    line = result.error_line
    assert result.code == 2 and result.out == ""
    expected = {"missing-key": "VISION_TRAINING_KEY is not set",
                "wrong-key": "Azure refused the training key (401)",
                "unreachable": f"cannot reach Azure Custom Vision at {endpoint}"}[case]
    assert expected in line, line
    if status is not None:  # the status command says the same, without failing
        assert status.code == 0 and f"not connected: {expected}" in status.out
    for text in (result.out, result.err, *((status.out, status.err) if status else ())):
        assert WRONG_KEY not in text and TRAINING_KEY not in text
    assert snapshot(seeded) == before
    assert_consistent(seeded)


# -- what must work: non-ASCII prompts and tag names ---------------------------------------------------

def test_non_ascii_prompts_and_tag_names_work_end_to_end(seeded, tiny_sd):
    prompt = "rote Schuhe auf weißem Grund, {赤い|青い}靴 👟 — «ça marche»"
    added = cli(seeded, "tags", "add", "Schuhe 靴", "--prompt", prompt, "--negative", "unscharf, ぼやけた",
                "--json")
    assert added.code == 0 and added.json["tag"]["distinct_prompts"] == 2
    made = cli(seeded, "generate", "--tag", "Schuhe 靴", "--count", "2", "--model", tiny_sd, "--width", "64",
               "--height", "64", "--steps", "1", "--json")
    assert made.code == 0, made.err
    assert made.json["generated"] == 2
    # another process, in the C locale, reads it back intact (JSON keeps the characters, not escapes)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONIOENCODING", None)
    proc = subprocess.run([sys.executable, "-m", "core", "--home", str(seeded), "images", "list", "--tag", "Schuhe 靴",
                           "--json"], capture_output=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    images = json.loads(proc.stdout.decode("utf-8").strip().splitlines()[-1])["images"]
    assert sorted(im["id"] for im in images) == sorted(made.json["images"])
    for im in images:
        assert im["tag"] == "Schuhe 靴" and im["provenance"]["negative"] == "unscharf, ぼやけた"
        assert im["provenance"]["prompt"] in ("rote Schuhe auf weißem Grund, 赤い靴 👟 — «ça marche»",
                                              "rote Schuhe auf weißem Grund, 青い靴 👟 — «ça marche»")
    assert_consistent(seeded)


# -- uploads ----------------------------------------------------------------------------------------

def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def noise(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width``×``height`` blank pixels: tens of kB on disk, gigabytes once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BAD_UPLOADS = [
    pytest.param("notes.png", lambda: b"these are my notes, not a picture", "not an image", id="non-image"),
    pytest.param("empty.jpg", lambda: b"", "not an image (empty file)", id="empty-file"),
    pytest.param("cut.png", lambda: encoded(noise())[:3000], "truncated", id="truncated-png"),
    pytest.param("cut.jpg", lambda: encoded(noise(), "JPEG")[:1500], "truncated", id="truncated-jpeg"),
    pytest.param("dot.png", lambda: encoded(Image.new("RGB", (1, 1), "red")), "too small: 1×1", id="1x1"),
    pytest.param("bomb.png", lambda: png_bomb(20_000, 20_000), "decompression bomb", id="bomb-400-megapixels"),
    pytest.param("bomb.png", lambda: png_bomb(10_000, 9_000), "decompression bomb: 10000×9000", id="bomb-just-over"),
]


@pytest.mark.parametrize("name, make, reason", BAD_UPLOADS)
def test_bad_uploads_are_rejected_with_their_reason_and_nothing_is_stored(seeded, tmp_path, name, make, reason):
    path = tmp_path / name
    path.write_bytes(make())
    before = snapshot(seeded)
    result = cli(seeded, "import", "--tag", "zero", "--source", "real", str(path), "--json")
    assert result.code == 0, result.err
    report = result.json
    assert report["imported"] == 0 and report["images"] == []
    [rejected] = report["rejected"]
    assert rejected["path"] == str(path) and reason in rejected["reason"], rejected
    assert f"rejected {path}: " in result.out
    assert snapshot(seeded) == before
    assert_consistent(seeded)


def _cmyk():
    return encoded(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG", quality=95)


def _sixteen_bit():
    ramp = np.tile(np.linspace(0, 65535, 64), (40, 1)).astype(np.uint16)
    return encoded(Image.fromarray(ramp))


def _alpha():
    picture = Image.new("RGBA", (64, 64), (200, 0, 0, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 32, 64))   # left half fully transparent
    return encoded(picture)


def _exif_rotated():
    exif = Image.Exif()
    exif[0x0112] = 6                               # "rotate 90° clockwise to display"
    picture = Image.new("RGB", (80, 48), (0, 0, 255))
    picture.paste((255, 255, 0), (0, 0, 80, 8))    # a yellow band along the stored top edge
    return encoded(picture, "JPEG", quality=95, exif=exif)


def _near(pixel, expected, tolerance=12):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


GOOD_UPLOADS = [
    pytest.param("cmyk.jpg", _cmyk, (64, 48), lambda im: _near(im.getpixel((10, 10)), (255, 0, 0), 40), id="cmyk"),
    pytest.param("depth16.png", _sixteen_bit, (64, 40),
                 lambda im: im.getpixel((0, 5)) == (0, 0, 0) and im.getpixel((63, 5)) == (255, 255, 255), id="16-bit"),
    pytest.param("alpha.png", _alpha, (64, 64),
                 lambda im: im.getpixel((5, 5)) == (255, 255, 255) and im.getpixel((60, 5)) == (200, 0, 0), id="alpha"),
    pytest.param("rotated.jpg", _exif_rotated, (48, 80),
                 lambda im: _near(im.getpixel((44, 40)), (255, 255, 0)) and _near(im.getpixel((5, 40)), (0, 0, 255)),
                 id="exif-rotated"),
]


@pytest.mark.parametrize("name, make, size, looks_right", GOOD_UPLOADS)
def test_unusual_photos_are_accepted_and_stored_as_plain_rgb(seeded, tmp_path, name, make, size, looks_right):
    path = tmp_path / name
    path.write_bytes(make())
    result = cli(seeded, "import", "--tag", "zero", "--source", "test", str(path), "--json")
    assert result.code == 0, result.err
    assert (result.json["imported"], result.json["rejected"]) == (1, [])
    [image_id] = result.json["images"]
    store = Store(seeded)
    try:
        row = store.get_image(image_id)
        assert (row["tag"], row["source"], row["width"], row["height"]) == ("zero", "test", *size)
        with Image.open(row["path"]) as stored:
            assert stored.format == "PNG" and stored.mode == "RGB" and stored.size == size
            assert looks_right(stored.convert("RGB"))
    finally:
        store.close()
    assert_consistent(seeded)


def test_zip_slip_entries_are_refused_and_nothing_lands_outside_the_store(seeded, tmp_path):
    archive = tmp_path / "upload" / "photos.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zero/fine.png", encoded(noise(seed=1)))
        zf.writestr("../escaped.png", encoded(noise(seed=2)))
        zf.writestr("zero/../../escaped-too.png", encoded(noise(seed=3)))
        zf.writestr("/etc/absolute.png", encoded(noise(seed=4)))
        zf.writestr("👟/emoji-folder.png", encoded(noise(seed=5)))
    def outside_the_store() -> list[str]:
        return sorted(str(p) for p in tmp_path.rglob("*") if seeded not in p.parents and p != seeded)

    outside = outside_the_store()
    before = snapshot(seeded)
    result = cli(seeded, "import", "--source", "real", str(archive), "--json")
    assert result.code == 0, result.err
    report = result.json
    assert report["imported"] == 1 and report["created_tags"] == []
    reasons = {r["path"].split("!", 1)[1]: r["reason"] for r in report["rejected"]}
    for entry in ("../escaped.png", "zero/../../escaped-too.png", "/etc/absolute.png"):
        assert "unsafe path in zip" in reasons[entry]
    assert "cannot be a tag" in reasons["👟/emoji-folder.png"]
    after = snapshot(seeded)
    assert len(after["files"]) == len(before["files"]) + 1
    assert len(after["rows"]["images"]) == len(before["rows"]["images"]) + 1
    assert outside_the_store() == outside
    assert not list(tmp_path.parent.rglob("escaped*.png")) and not Path("/etc/absolute.png").exists()
    assert_consistent(seeded)
