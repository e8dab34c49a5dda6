"""``import --source synthetic --generator NAME``: images made elsewhere, with the parameters their files carry."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image, PngImagePlugin

from core.data import slicing
from core.data.ingest import import_paths, import_uploads
from core.errors import InvalidInput
from tests.reliability.conftest import assert_consistent, cli, snapshot

A1111 = ("a photo of blue jeans, studio light\nNegative prompt: blurry, lowres\n"
         'Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x512, '
         'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "a: 1, b: 2"')
COMFY = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 8.0, "sampler_name": "euler",
                                               "positive": ["6", 0], "negative": ["7", 0], "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "white sneakers on a table", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
}


def png(color, text: dict | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_a1111_comfyui_and_sidecar_parameters_become_provenance(store, tmp_path):
    folder = tmp_path / "made"
    (folder / "jeans").mkdir(parents=True)
    (folder / "shoes").mkdir()
    (folder / "jeans" / "a1111.png").write_bytes(png((10, 20, 200), {"parameters": A1111}))
    (folder / "shoes" / "comfy.png").write_bytes(png((200, 10, 10), {"prompt": json.dumps(COMFY)}))
    (folder / "shoes" / "cloud.png").write_bytes(png((190, 30, 20)))
    (folder / "shoes" / "cloud.json").write_text(json.dumps({"prompt": "red boots", "seed": 7,
                                                             "model": "dall-e-3", "quality": "hd"}))
    result = import_paths(store, [folder], source="synthetic", generator="mixed-tools")
    assert (result["imported"], result["rejected"]) == (3, [])  # the sidecar is read, not imported
    assert result["created_tags"] == ["jeans", "shoes"]
    rows = {r["provenance"]["original_name"].rsplit("/", 1)[-1]: r for r in store.list_images(source="synthetic")}
    a = rows["a1111.png"]["provenance"]
    assert a["generator"] == "mixed-tools" and a["parameters"] == A1111
    assert (a["prompt"], a["negative"], a["seed"], a["steps"], a["guidance"], a["scheduler"], a["model_id"]) == (
        "a photo of blue jeans, studio light", "blurry, lowres", 1234567, 28, 6.5, "DPM++ 2M Karras",
        "v1-5-pruned-emaonly")
    c = rows["comfy.png"]["provenance"]
    assert (c["prompt"], c["negative"], c["seed"], c["steps"], c["guidance"], c["scheduler"], c["model_id"]) == (
        "white sneakers on a table", "text, watermark", 42, 20, 8.0, "euler", "sd_xl_base_1.0.safetensors")
    assert c["comfyui_prompt"] == COMFY
    s = rows["cloud.png"]["provenance"]
    assert (s["prompt"], s["seed"], s["model_id"]) == ("red boots", 7, "dall-e-3")
    assert s["sidecar"]["quality"] == "hd"
    assert store.tag_counts("shoes") == {"synthetic": 2, "real": 0, "test": 0}
    assert_consistent(store.root)


def test_imported_synthetic_images_enter_slices_as_synthetic(store, tmp_path):
    shades = {"jeans": [(10, 20, 200 - i) for i in range(4)], "shoes": [(200 - i, 10, 10) for i in range(4)]}
    uploads = [(f"{t}/{i}.png", png(c)) for t, cs in shades.items() for i, c in enumerate(cs)]
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        for name, data in uploads:
            z.writestr(name, data)
        z.writestr("jeans/0.json", json.dumps({"prompt": "dark jeans", "seed": 3}))
    result = import_uploads(store, [("made.zip", zipped.getvalue())], source="synthetic", generator="comfyui")
    assert result["imported"] == 8 and result["rejected"] == []
    (sl,) = slicing.build_slices(store, slicing.SliceSpec(name="synth", counts=(3,), real_fraction=0.0))
    members = slicing.slice_members(store, sl["id"])
    assert len(members) == 6 and {m["source"] for m in members} == {"synthetic"}
    first = [r for r in store.list_images(tag="jeans") if r["provenance"]["original_name"].endswith("jeans/0.png")]
    assert first[0]["provenance"]["prompt"] == "dark jeans" and first[0]["provenance"]["generator"] == "comfyui"


def test_cli_synthetic_import_needs_a_generator_and_changes_nothing_without_one(store, tmp_path):
    store.add_tag("zero")
    seeded = store.root
    (tmp_path / "x.png").write_bytes(png((1, 2, 3), {"parameters": A1111}))
    before = snapshot(seeded)
    refused = cli(seeded, "import", str(tmp_path / "x.png"), "--tag", "zero", "--source", "synthetic")
    assert refused.code == 2
    assert refused.error_line == ("error: importing synthetic images needs the tool that made them: --generator NAME "
                                  "(e.g. comfyui, a1111, dall-e-3)")
    photos = cli(seeded, "import", str(tmp_path / "x.png"), "--tag", "zero", "--generator", "a1111")
    assert photos.code == 2 and "--generator is for synthetic images only" in photos.error_line
    assert snapshot(seeded) == before
    done = cli(seeded, "import", str(tmp_path / "x.png"), "--tag", "zero", "--source", "synthetic",
               "--generator", "a1111", "--json")
    assert done.code == 0 and done.json["imported"] == 1
    listed = cli(seeded, "images", "list", "--tag", "zero", "--source", "synthetic", "--json").json["images"]
    assert [(i["provenance"]["generator"], i["provenance"]["seed"]) for i in listed] == [("a1111", 1234567)]
    assert_consistent(seeded)


def test_junk_parameters_are_kept_raw_and_never_break_the_import(store):
    store.add_tag("jeans")
    weird = png((5, 5, 5), {"parameters": "Steps: lots, Seed: 99999999999999999999999", "prompt": "{not json"})
    result = import_uploads(store, [("w.png", weird), ("w.json", b"[1, 2]")], tag="jeans", source="synthetic",
                            generator="x")
    assert result["imported"] == 1 and result["rejected"] == []
    prov = store.get_image(result["images"][0])["provenance"]
    assert prov["seed"] is None and prov["steps"] is None and "comfyui_prompt" not in prov
    assert prov["parameters"].startswith("Steps: lots")
    with pytest.raises(InvalidInput):
        import_uploads(store, [("w.png", weird)], tag="jeans", source="synthetic", generator="a\x00b")
