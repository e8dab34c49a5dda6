import pytest
from PIL import Image

from core.errors import InvalidInput, NotFound, UnknownTag
from core.store.database import Store
from core.store.migrations import MIGRATIONS


def _img(color=(255, 0, 0), size=(16, 12)):
    return Image.new("RGB", size, color)


def test_new_store_is_wal_and_migrated(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version == max(v for v, _ in MIGRATIONS)
    assert store.integrity_check() == "ok"


def test_an_old_store_opens_in_a_new_version_with_its_data(home, monkeypatch):
    from core.store import migrations

    old = Store(home)
    old.add_tag("jeans", "blue jeans")
    old.close()
    newer = migrations.MIGRATIONS + [(1000, "ALTER TABLE tags ADD COLUMN colour TEXT DEFAULT 'blue'")]
    monkeypatch.setattr(migrations, "MIGRATIONS", newer)
    s = Store(home)
    assert s.schema_version == 1000
    assert s.query("SELECT name, prompt, colour FROM tags") == [{"name": "jeans", "prompt": "blue jeans", "colour": "blue"}]


def test_tags_round_trip_with_counts(store):
    store.add_tag("jeans", "{blue|black} jeans", "blurry")
    tag = store.get_tag("jeans")
    assert tag["prompt"] == "{blue|black} jeans" and tag["negative"] == "blurry"
    assert tag["counts"] == {"synthetic": 0, "real": 0, "test": 0}
    store.add_image(_img(), tag="jeans", source="real")
    assert store.list_tags()[0]["counts"]["real"] == 1


@pytest.mark.parametrize(
    "name, message",
    [
        ("a/b", "path separator"),
        ("..", "not allowed"),
        ("a\\b", "path separator"),
        ("bad\x07name", "control character"),
        ("", "empty"),
        ("x" * 65, "longer than 64"),
        ("shoes👟", "contains"),
    ],
)
def test_bad_tag_names_are_refused_and_nothing_is_written(store, name, message):
    with pytest.raises(InvalidInput, match=message):
        store.add_tag(name, "p")
    assert store.list_tags() == []


def test_duplicate_tag_is_refused_unless_updating(store):
    store.add_tag("shoes", "shoes")
    with pytest.raises(InvalidInput, match="already exists"):
        store.add_tag("shoes", "other")
    assert store.add_tag("shoes", "new prompt", update=True)["prompt"] == "new prompt"


def test_unicode_tag_names_are_fine(store):
    assert store.add_tag("Hosen-ü", "p")["name"] == "Hosen-ü"


def test_huge_prompt_is_refused(store):
    with pytest.raises(InvalidInput, match="longer than 10000"):
        store.add_tag("jeans", "x" * 10_001)


def test_images_are_content_addressed_and_deduplicated(store):
    store.add_tag("jeans")
    image_id, created = store.add_image(_img(), tag="jeans", source="synthetic", seed=3, prompt="blue jeans")
    again, created_again = store.add_image(_img(), tag="jeans", source="synthetic", seed=3)
    assert created and not created_again and again == image_id
    path = store.image_file(image_id)
    assert path.name == f"{image_id}.png" and path.parent.name == image_id[:2]
    row = store.get_image(image_id)
    assert row["provenance"]["seed"] == 3 and row["provenance"]["prompt"] == "blue jeans"
    assert (row["width"], row["height"]) == (16, 12)
    assert store.count_images() == 1


def test_image_for_unknown_tag_writes_nothing(store):
    with pytest.raises(UnknownTag):
        store.add_image(_img(), tag="nope", source="real")
    assert not any(store.images_dir.rglob("*.png"))


def test_reject_and_restore(store):
    store.add_tag("jeans")
    image_id, _ = store.add_image(_img(), tag="jeans", source="real")
    store.set_rejected(image_id)
    assert store.get_image(image_id)["rejected"]
    assert store.tag_counts("jeans")["real"] == 0
    assert store.image_file(image_id).exists()
    store.set_rejected(image_id, False)
    assert store.tag_counts("jeans")["real"] == 1
    with pytest.raises(NotFound):
        store.set_rejected("0" * 64)


def test_leftover_temp_files_are_removed_on_open(home):
    s = Store(home)
    folder = s.images_dir / "ab"
    folder.mkdir()
    (folder / ".tmp-abc-1-2").write_bytes(b"half")
    s.close()
    Store(home)
    assert not (folder / ".tmp-abc-1-2").exists()


def test_unwritable_store_fails_clearly_and_keeps_the_db_consistent(store):
    store.add_tag("jeans")
    image = _img((1, 2, 3))
    import hashlib

    from core.store.database import png_bytes

    blocked = store.images_dir / hashlib.sha256(png_bytes(image)).hexdigest()[:2]
    blocked.write_bytes(b"not a folder")
    with pytest.raises(InvalidInput, match="cannot write to the store"):
        store.add_image(image, tag="jeans", source="real")
    assert store.count_images() == 0
    assert store.integrity_check() == "ok"
