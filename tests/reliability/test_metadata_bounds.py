"""Issue #24, item 4: foreign metadata is parsed in bounded time and never aborts an import.

Known answers: the pathological files of the issue (a 13 KB PNG whose A1111 ``parameters`` end in a
900 000-character line, ComfyUI graphs nested 100 000 deep or with ``inputs`` that are a list or a string,
a sidecar of nested brackets) each parse within a time limit, give no parameters and a note, and the
well-formed texts still give exactly their parameters.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from core.data import generator_metadata as mp
from core.store.imaging import upright
from tests.reliability.conftest import assert_consistent

A1111 = ("a photo of blue jeans, studio light\nNegative prompt: blurry, lowres\n"
         'Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x512, '
         'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "a: 1, b: 2"')
COMFY = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 8.0, "sampler_name": "euler",
                                               "positive": ["6", 0], "negative": ["7", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "white sneakers"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark"}},
}
LONG = 900_000
ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 2.0  # each pathological text; the quadratic parser took 25 s at 40 000 characters


def pathological_a1111() -> dict[str, str]:
    head = "a prompt\nSteps: 20, "
    return {
        "no colon": head + "a" * LONG,
        "words": head + "a b " * (LONG // 4),
        "escaped quotes": head + 'Lora: "' + '\\"' * (LONG // 2),
        "commas": head + "," * LONG,
        "colons": head + ":" * LONG,
        "long key": head + "k" * LONG + ": 1",
        "quote pairs": head + '"' * LONG,
    }


def timed(fn, *args):
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started


@pytest.mark.parametrize("name", sorted(pathological_a1111()))
def test_a1111_settings_line_is_linear(name):
    text = pathological_a1111()[name]
    found, seconds = timed(mp.parse_a1111, text)
    assert seconds < LIMIT_S, f"{name}: {seconds:.1f} s"
    assert found["prompt"] == "a prompt"
    provenance, extra = mp.parameters({"parameters": text}, None)
    assert extra["metadata_notes"] == [f"A1111 parameters cut to 100,000 of {len(text):,} characters"]
    assert len(extra["parameters"]) == mp.MAX_RAW and provenance["steps"] == 20


def test_a1111_known_answer_is_unchanged():
    found = mp.parse_a1111(A1111)
    assert found == {"prompt": "a photo of blue jeans, studio light", "negative": "blurry, lowres",
                     "seed": "1234567", "steps": "28", "guidance": "6.5", "scheduler": "DPM++ 2M Karras",
                     "model_id": "v1-5-pruned-emaonly"}
    assert mp.parse_settings_line('Steps: 1, Lora hashes: "a: 1, b: 2", x(y) Key: v') == {
        "Steps": "1", "Lora hashes": "a: 1, b: 2", "Key": "v"}
    assert mp.parse_a1111("just a prompt") == {"prompt": "just a prompt", "negative": None, "seed": None,
                                               "steps": None, "guidance": None, "scheduler": None,
                                               "model_id": None}


@pytest.mark.parametrize("label,chunks,sidecar,note", [
    ("deep comfy", {"prompt": "[" * 100_000 + "]" * 100_000}, None,
     "ComfyUI prompt dropped: longer than 100,000 characters (200,000)"),
    ("deep comfy within the size cap", {"prompt": '{"a":' * 15_000 + "1" + "}" * 15_000}, None,
     "ComfyUI prompt dropped: nested deeper than 64 levels"),
    ("deep sidecar", {}, b"[" * 50_000 + b"]" * 50_000, "JSON sidecar dropped: nested deeper than 64 levels"),
    ("huge sidecar", {}, b" " * 100_001, "JSON sidecar dropped: larger than 100,000 bytes"),
    ("list sidecar", {}, b"[1, 2]", "JSON sidecar dropped: not a JSON object (a list)"),
    ("broken comfy", {"prompt": "{not json"}, None,
     ("ComfyUI prompt dropped: not valid JSON (Expecting property name enclosed in double quotes: line 1 "
      "column 2 (char 1))")),
])
def test_malformed_json_is_dropped_with_a_note(label, chunks, sidecar, note):
    (provenance, extra), seconds = timed(mp.parameters, chunks, sidecar)
    assert seconds < LIMIT_S, label
    assert provenance == {} and extra["metadata_notes"] == [note], label
    assert "comfyui_prompt" not in extra and "sidecar" not in extra


@pytest.mark.parametrize("inputs", [[1, 2], "a string", None, 7, {"positive": {"x": 1}, "negative": [[1]]},
                                    {"positive": [True, 0]}, {"positive": ["missing", 0]}])
def test_comfyui_nodes_of_any_shape_give_nothing_not_an_error(inputs):
    graph = {"1": {"class_type": "KSampler", "inputs": inputs}, "2": {"inputs": "x"}, "3": [1], "4": None,
             "5": {"class_type": ["KSampler"], "inputs": {"text": 5}}}
    provenance, extra = mp.parameters({"prompt": json.dumps(graph)}, None)
    assert "metadata_notes" not in extra and extra["comfyui_prompt"] == graph
    assert set(provenance) <= {"seed", "steps"}


def test_comfyui_known_answer():
    provenance, extra = mp.parameters({"prompt": json.dumps(COMFY)}, b'{"prompt": "ignored: comfy came first"}')
    assert provenance == {"seed": 42, "steps": 20, "guidance": 8.0, "scheduler": "euler",
                          "prompt": "white sneakers", "negative": "watermark",
                          "model_id": "sd_xl_base_1.0.safetensors"}
    assert "metadata_notes" not in extra


def test_parameters_is_total_on_random_bytes():
    rng = random.Random(24)
    alphabet = '[]{}":,\\ Steps:0123456789aSeedNegative prompt:\n'
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        provenance, extra = mp.parameters({"parameters": text, "prompt": text}, text.encode())
        assert isinstance(provenance, dict) and isinstance(extra, dict)
    provenance, _ = mp.parameters({}, b'{"seed": 1e999, "steps": "nan", "cfg": [1], "prompt": "ok", "model": true}')
    assert provenance == {"prompt": "ok"}


def test_broken_exif_keeps_the_photo_with_a_note():
    image = Image.new("RGB", (40, 32), (10, 20, 30))

    class Broken(Exception):
        pass

    def explode():
        raise Broken("orientation tag of type 99")

    image.getexif = explode  # what a malformed EXIF block does inside Pillow
    turned, note = upright(image)
    assert turned is image and note == "EXIF orientation ignored: Broken: orientation tag of type 99"
    fine = Image.new("RGB", (40, 32))
    exif = fine.getexif()
    exif[0x0112] = 6  # rotated 90°: stored sideways
    buf = io.BytesIO()
    fine.save(buf, "JPEG", exif=exif)
    turned, note = upright(Image.open(io.BytesIO(buf.getvalue())))
    assert note is None and turned.size == (32, 40)


# -- the whole import, as the issue reported it -------------------------------------------------------

def _png(color, text: dict | None = None, compressed: bool = False) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v, zip=compressed)
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _pathological_folder(root: Path) -> dict[str, bytes]:
    folder = root / "made" / "jeans"
    folder.mkdir(parents=True)
    files = {
        "good.png": _png((10, 20, 200), {"parameters": A1111}),
        "hang.png": _png((20, 20, 200), {"parameters": "p\nSteps: 20, " + "a" * LONG}, compressed=True),
        "deep.png": _png((30, 20, 200), {"prompt": '{"a":' * 15_000 + "1" + "}" * 15_000}, compressed=True),
        "list-inputs.png": _png((40, 20, 200), {"prompt": json.dumps({"1": {"class_type": "KSampler",
                                                                            "inputs": [1, 2]}})}),
        "string-inputs.png": _png((50, 20, 200), {"prompt": json.dumps({"1": {"class_type": "KSampler",
                                                                              "inputs": "x"}})}),
        "bracketed.png": _png((60, 20, 200)),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "bracketed.json").write_text("[" * 50_000 + "]" * 50_000)
    return files


def test_pathological_files_import_in_bounded_time_with_notes(tmp_path):
    files = _pathological_folder(tmp_path)
    assert len(files["hang.png"]) < 20_000  # the 13 KB PNG
    home = tmp_path / "home"
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "core", "--home", str(home), "import", "--source",
                               "synthetic", "--generator", "a1111", str(tmp_path / "made"), "--json"],
                              check=False, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("the import did not finish within 20 s")
    assert time.monotonic() - started < 20
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["imported"], result["rejected"]) == (6, [])
    listed = subprocess.run([sys.executable, "-m", "core", "--home", str(home), "images", "list", "--json"],
                            check=False, capture_output=True, text=True, timeout=20, cwd=ROOT)
    notes = {Path(i["provenance"]["original_name"]).name: i["provenance"].get("metadata_notes")
             for i in json.loads(listed.stdout.strip().splitlines()[-1])["images"]}
    assert notes == {
        "good.png": None,
        "hang.png": [f"A1111 parameters cut to 100,000 of {LONG + 13:,} characters"],
        "deep.png": ["ComfyUI prompt dropped: nested deeper than 64 levels"],
        "list-inputs.png": None,
        "string-inputs.png": None,
        "bracketed.png": ["JSON sidecar dropped: nested deeper than 64 levels"],
    }
    assert_consistent(home)
