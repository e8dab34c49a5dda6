"""Commands on the data: tags, images, import, sample, slice, export."""

from __future__ import annotations

import argparse

from core.cli import common
from core.store.database import Store


def cmd_tags_add(store: Store, a: argparse.Namespace) -> dict:
    from core.generate.prompts import count_prompts, validate_template

    for text, what in ((a.prompt, "prompt"), (a.negative, "negative prompt")):
        if text and text.strip():
            validate_template(text, what)
    tag = store.add_tag(a.name, a.prompt or "", a.negative or "", update=a.update)
    tag["distinct_prompts"] = count_prompts(tag["prompt"]) if tag["prompt"] else 0
    n = tag["distinct_prompts"]
    print(f"tag {tag['name']}: {n} distinct prompts" if n <= 1000 else f"tag {tag['name']}: {n:,} prompt variants")
    return {"tag": tag}


def cmd_tags_list(store: Store, a: argparse.Namespace) -> dict:
    tags = store.list_tags()
    for t in tags:
        c = t["counts"]
        print(f"{t['name']:<20} synthetic {c['synthetic']:>5}  real {c['real']:>5}  test {c['test']:>5}  {t['prompt']}")
    return {"tags": tags}


def cmd_import(store: Store, a: argparse.Namespace) -> dict:
    from core.data.ingest import import_paths

    report = import_paths(store, a.paths, tag=a.tag, source=a.source, generator=a.generator,
                          progress=common.progress_printer("import"))
    print(f"imported {report['imported']}, duplicates {report['duplicates']}, rejected {len(report['rejected'])}")
    if report["created_tags"]:
        print(f"created tags (empty prompts): {', '.join(report['created_tags'])}")
    for r in report["rejected"]:
        print(f"  rejected {r['path']}: {r['reason']}")
    return report


def cmd_sample_clothing(store: Store, a: argparse.Namespace) -> dict:
    from core.data.sample_jobs import load_sample

    result = load_sample(store, per_tag=a.per_tag, test_per_tag=a.test_per_tag, size=a.size,
                         progress=common.progress_printer("sample"), more_shoes=a.more_shoes, more_shirts=a.more_shirts)
    print(f"clothing sample from {result['source']}: imported {result['imported']}, "
          f"already there {result['duplicates']}; tags {', '.join(t['name'] for t in result['tags'])}")
    return result


def cmd_images_list(store: Store, a: argparse.Namespace) -> dict:
    images = store.list_images(tag=a.tag, source=a.source)
    for im in images:
        flag = " (rejected)" if im["rejected"] else ""
        print(f"{im['id'][:12]} {im['tag']:<12} {im['source']:<9} {im['width']}x{im['height']}{flag}")
    return {"images": images}


def cmd_images_reject(store: Store, a: argparse.Namespace) -> dict:
    for image_id in a.ids:
        store.set_rejected(image_id, not a.restore)
    return {"images": a.ids, "rejected": not a.restore}


def cmd_slice(store: Store, a: argparse.Namespace) -> dict:
    from core.data.filtering import FilterSpec
    from core.data.slicing import build_sweep, sweep

    sizes = tuple(a.sizes or ()) or (a.size,)
    filter_spec = None
    if a.min_own_tag_probability is not None or a.drop_near_duplicates or a.drop_label_issues:
        filter_spec = FilterSpec(min_own_tag_probability=a.min_own_tag_probability,
                                 drop_near_duplicates=a.drop_near_duplicates, clip_model=a.filter_clip,
                                 drop_label_issues=a.drop_label_issues)
    slices = build_sweep(store, sweep(a.name, tuple(a.counts), sizes, fit=a.fit, resample=a.resample,
                                      real_fraction=a.real_fraction, repeats=a.repeats, seed=a.seed,
                                      tags=tuple(a.tags or ()), filter=filter_spec))
    for s in slices:
        print(f"slice {s['id']} {s['name']} n={s['count_per_tag']} size={s['size']} "
              f"real={s['real_fraction']} repeat={s['repeat']} {s['hash'][:12]}"
              f"{'' if s.get('created', True) else ' (existing)'}")
    from core.data.repeats import overlap_note

    for note in dict.fromkeys(f"n={s['count_per_tag']}: {n}" for s in slices if (n := overlap_note(s.get("repeat_overlap")))):
        print(f"warning: {note}")
    return {"slices": slices}


def cmd_slice_export(store: Store, a: argparse.Namespace) -> dict:
    from core.data.slice_export import export_slice

    path = export_slice(store, a.slice, a.out, progress=common.progress_printer("export"))
    print(f"wrote {path}")
    return {"export": str(path)}
