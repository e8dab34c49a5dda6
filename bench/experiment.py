"""Benchmark: the whole experiment from an empty store, offline — stage by stage, each against a plain script.

    python bench/experiment.py [--per-tag 200] [--test-per-tag 50] [--counts 10,30,50,120,170,200]
                               [--sizes 256] [--repeats 3] [--pairs 2] [--no-scaling] [--keep DIR]

Runs, in this process and in order, what ``python -m core experiment run`` does — sample, generate with
the built-in ``fashion-mini``, cut the three arms, embed, train, score, compare — and then ``diagnose``,
printing each stage's seconds, its share of the whole, and the peak RSS after it. Then, for the stages
with a plain equivalent, ``--pairs`` paired timings (ABAB…, order flipped every other pair) of ours
against the plainest script that gives the same numbers, in this process:

* **embed**: ours (embedding cache cleared) vs a loop that loads each (image, size) once, resized, and
  runs the encoder in batches of 64 under ``torch.inference_mode``;
* **train** (once embedded): ours (every run reset to queued, the cache warm) vs scikit-learn's
  ``StandardScaler`` + ``LogisticRegression`` (newton-cg, C = 1: the probe's own settings) per slice on
  vectors already in memory;
* **score**: ours (predictions and evaluations dropped) vs ``predict_proba`` of each plain head on the
  test photos' vectors, plus accuracy;
* **diagnose** (caches cleared): ours vs, per tag and size, a cross-validated logistic-regression AUC on
  the embeddings, plus out-of-fold probabilities over all tags into ``cleanlab.find_label_issues``
  (the headline numbers only: ours also runs the calibrated pixel probe, near-duplicates, the Fréchet gap
  and the spectra, so its ratio says what those cost).

``--scaling`` (default on) also times ``diagnose`` cold with half of each tag's images rejected and with
all of them, and prints full/half (the goal: ≤ 2.2×). Goals checked: train ≤ 60 s and ≤ 1.5× plain;
the whole experiment ≤ 600 s; diagnose on the store ≤ 120 s. The load average is printed beside the
figures: on a shared machine they are taken under load.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.paired import interleave, machine  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


class Stages:
    """Seconds, peak RSS and load average per stage, printed as a table."""

    def __init__(self):
        self.rows: list[tuple[str, float, float, str]] = []

    def run(self, name: str, fn):
        print(f"[{time.strftime('%H:%M:%S')}] {name} … ({load()})", flush=True)
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        self.rows.append((name, seconds, peak_mb(), load()))
        print(f"    {name}: {seconds:.1f} s", flush=True)
        return out

    def table(self, ratios: dict[str, str]) -> str:
        total = sum(s for name, s, _, _ in self.rows if name != "diagnose")
        lines = ["| stage | seconds | share of the experiment | peak RSS after | paired ratio ours / plain | load (1, 5, 15 min) |",
                 "|---|---|---|---|---|---|"]
        for name, seconds, peak, ld in self.rows:
            share = f"{100 * seconds / total:.0f} %" if name != "diagnose" else "(not in the experiment)"
            lines.append(f"| {name} | {seconds:.1f} | {share} | {peak:.0f} MB | {ratios.get(name, 'n/a')} | {ld[5:]} |")
        lines.append(f"| **experiment (sample → compare)** | **{total:.1f}** | 100 % | {peak_mb():.0f} MB | | {load()[5:]} |")
        return "\n".join(lines)


# -- plain equivalents ---------------------------------------------------------------------------------

def plain_embed(store, ref, pairs_of_images: dict[tuple[str, int], dict]) -> dict:
    """Every (image, size) once: resized, batched 64 at a time through the encoder, in inference mode."""
    import numpy as np
    import torch

    from core.models import encoders
    from core.store import imaging

    model = encoders.load_vision_model(ref)
    keys = list(pairs_of_images)
    out = {}
    with torch.inference_mode():
        for k in range(0, len(keys), 64):
            chunk = keys[k:k + 64]
            pics = [imaging.resized(store, image_id, size) for image_id, size in chunk]
            feats = encoders.image_features(model, encoders.pixel_values(ref, pics, "cpu")).float().numpy()
            out.update(zip(chunk, np.asarray(feats, dtype=np.float32)))
    return out


def _rows(vectors: dict, ids: list[str], size: int):
    import numpy as np

    x = np.stack([vectors[(i, size)] for i in ids]).astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def plain_train(vectors: dict, slices: list[dict]) -> list:
    """Per slice: StandardScaler + LogisticRegression(newton-cg, C=1) on the slice's vectors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    heads = []
    with threadpool_limits(1):
        for s in slices:
            x = _rows(vectors, [m["id"] for m in s["members"]], s["size"])
            y = [m["tag"] for m in s["members"]]
            heads.append(make_pipeline(StandardScaler(), LogisticRegression(C=1.0, solver="newton-cg",
                                                                            max_iter=1000)).fit(x, y))
    return heads


def plain_score(vectors: dict, slices: list[dict], heads: list, tests: list[dict]) -> list[float]:
    import numpy as np

    out = []
    truth = np.array([t["tag"] for t in tests])
    for s, head in zip(slices, heads):
        p = head.predict_proba(_rows(vectors, [t["id"] for t in tests], s["size"]))
        out.append(float((head.classes_[p.argmax(1)] == truth).mean()))
    return out


def plain_diagnose(store, ref, tags: list[str], sizes: list[int]) -> None:
    """Embed each training image per size, then per tag a CV logistic AUC synthetic vs real, and label
    issues from out-of-fold probabilities (cleanlab)."""
    import numpy as np
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    images = [im for im in store.list_images(include_rejected=False) if im["source"] in ("synthetic", "real")]
    vectors = plain_embed(store, ref, {(im["id"], size): im for im in images for size in sizes})
    for size in sizes:
        for tag in tags:
            mine = [im for im in images if im["tag"] == tag]
            x = np.stack([vectors[(im["id"], size)] for im in mine])
            y = np.array([im["source"] == "synthetic" for im in mine], dtype=int)
            cv = StratifiedKFold(5, shuffle=True, random_state=0)
            scores = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), x, y,
                                       cv=cv, method="decision_function")
            roc_auc_score(y, scores)
    x = np.stack([vectors[(im["id"], sizes[0])] for im in images])
    labels = np.array([sorted(tags).index(im["tag"]) for im in images])
    probs = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)), x, labels,
                              cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
    find_label_issues(labels=labels, pred_probs=probs, filter_by="prune_by_noise_rate")


# -- resets between paired timings ----------------------------------------------------------------------

def clear_diagnose_caches(store) -> None:
    with store.tx() as conn:
        conn.execute("DELETE FROM embeddings")
        conn.execute("DELETE FROM image_signatures")
    shutil.rmtree(store.root / "cache" / "duplicates", ignore_errors=True)


def reset_runs(store, run_ids: list[int]) -> None:
    marks = ",".join("?" * len(run_ids))
    with store.tx() as conn:
        conn.execute(f"DELETE FROM predictions WHERE run_id IN ({marks})", run_ids)
        conn.execute(f"UPDATE runs SET status = 'queued', error = NULL, started = NULL, finished = NULL, "
                     f"metrics = '{{}}', artifact = NULL WHERE id IN ({marks})", run_ids)


def drop_scores(store, run_ids: list[int]) -> None:
    import json

    marks = ",".join("?" * len(run_ids))
    with store.tx() as conn:
        conn.execute(f"DELETE FROM predictions WHERE run_id IN ({marks})", run_ids)
        for row in conn.execute(f"SELECT id, metrics FROM runs WHERE id IN ({marks})", run_ids).fetchall():
            metrics = json.loads(row[1] or "{}")
            metrics.pop("evaluation", None)
            conn.execute("UPDATE runs SET metrics = ? WHERE id = ?", (json.dumps(metrics), row[0]))


# -- the benchmark ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-tag", type=int, default=200)
    parser.add_argument("--test-per-tag", type=int, default=50)
    parser.add_argument("--counts", default="10,30,50,120,170,200")
    parser.add_argument("--sizes", default="256")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=2, help="paired timings per stage (ABAB…)")
    parser.add_argument("--no-scaling", action="store_true", help="skip diagnose on half vs all images")
    parser.add_argument("--keep", help="build the store in this folder and keep it (default: a temp folder)")
    a = parser.parse_args(argv)

    from core.analysis import diagnostics
    from core.analysis.evaluation import evaluate, results, test_images
    from core.data import samples, slicing
    from core.flows.experiment import add_preset_tags
    from core.flows.experiment_run import ExperimentRun, comparisons
    from core.generate.generation import generate
    from core.generate.planning import GenerationSpec
    from core.models import embedding_cache, encoder_resolution
    from core.store.database import Store
    from core.train import training

    counts = tuple(int(c) for c in a.counts.split(","))
    sizes = tuple(int(s) for s in a.sizes.split(","))
    spec = ExperimentRun(per_tag=a.per_tag, test_per_tag=a.test_per_tag, counts=counts, sizes=sizes,
                         repeats=a.repeats).checked()
    tmp = None
    if a.keep:
        home = Path(a.keep)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="synthlab-bench-exp-")
        home = Path(tmp.name) / "home"
    print(machine(with_torch=False))
    print(f"experiment: {spec.per_tag} generated + {spec.per_tag} real images per tag, {spec.test_per_tag} test, "
          f"counts {counts}, sizes {sizes}, {spec.repeats} repeats, 3 arms; store {home}; {load()}")
    store = Store(home)
    stages = Stages()
    stages.run("sample", lambda: samples.load_clothing_sample(store, per_tag=spec.per_tag,
                                                                test_per_tag=spec.test_per_tag))
    add_preset_tags(store, spec.preset())
    stages.run("generate", lambda: [generate(store, GenerationSpec(tag=t, count=spec.per_tag, model=spec.model,
                                                                   seed=spec.seed)) for t in spec.tags])
    preset = spec.preset()

    def cut():
        built = []
        for arm in preset.arms:
            built += slicing.build_sweep(store, slicing.sweep(arm.name, preset.counts, preset.sizes,
                                                              real_fraction=arm.real_fraction,
                                                              repeats=preset.repeats, seed=preset.seed,
                                                              tags=preset.tags))
        return built

    built = stages.run("cut", cut)
    slice_ids = [str(s["id"]) for s in built]
    run_ids = training.prepare_runs(store, slice_ids)
    tests = test_images(store)
    ref = encoder_resolution.resolve_encoder(None)

    def embed():
        training.embed_sweep(store, training.list_runs(store, run_ids))
        for size in sizes:
            embedding_cache.embed_images(store, ref, tests, embedding_cache.View.of(size), batch_size=64)

    stages.run("embed", embed)
    runs = stages.run("train", lambda: training.train(store, slice_ids))
    stages.run("score", lambda: evaluate(store, run_ids))
    found = stages.run("compare", lambda: comparisons(results(store, run_ids)))
    diag = stages.run("diagnose", lambda: diagnostics.diagnose(store, list(spec.tags), sizes))
    n_diag = sum(sum(t["counts"].values()) for t in diag["tags"].values())
    print(f"{len(runs)} runs; {len(found[0])} comparisons; diagnose saw {n_diag} training images "
          f"(+ {len(tests)} test photos in the store)")

    # -- paired ratios against plain scripts ---------------------------------------------------------
    slices = [training.slice_for_run(store, r) for r in training.list_runs(store, run_ids)]
    wanted = {(m["id"], s["size"]): m for s in slices for m in s["members"]}
    wanted.update({(t["id"], size): t for t in tests for size in sizes})
    ratios: dict[str, str] = {}

    def ours_embed(i):
        with store.tx() as conn:
            conn.execute("DELETE FROM embeddings WHERE encoder = ?", (ref.key,))
        t0 = time.perf_counter()
        embed()
        return time.perf_counter() - t0

    plain_vectors: dict = {}

    def plain_embed_timed(i):
        t0 = time.perf_counter()
        plain_vectors.update(plain_embed(store, ref, wanted))
        return time.perf_counter() - t0

    for name, a_fn, b_fn in (("embed", ours_embed, plain_embed_timed),):
        p = interleave(a_fn, b_fn, a.pairs)
        ratios[name] = f"{p.median:.2f}× ({min(p.ratios):.2f}–{max(p.ratios):.2f}, {len(p.ratios)} pairs)"
        print(f"{name}: {p.summary()} ({load()})", flush=True)

    heads: list = []

    def ours_train(i):
        reset_runs(store, run_ids)
        t0 = time.perf_counter()
        training.train(store, slice_ids)
        return time.perf_counter() - t0

    def plain_train_timed(i):
        t0 = time.perf_counter()
        heads[:] = plain_train(plain_vectors, slices)
        return time.perf_counter() - t0

    train_pairs = interleave(ours_train, plain_train_timed, a.pairs)
    ratios["train"] = (f"{train_pairs.median:.2f}× ({min(train_pairs.ratios):.2f}–{max(train_pairs.ratios):.2f}, "
                       f"{len(train_pairs.ratios)} pairs; once embedded)")
    print(f"train (once embedded): {train_pairs.summary()} ({load()})", flush=True)
    evaluate(store, run_ids)

    def ours_score(i):
        drop_scores(store, run_ids)
        t0 = time.perf_counter()
        evaluate(store, run_ids)
        return time.perf_counter() - t0

    def plain_score_timed(i):
        t0 = time.perf_counter()
        plain_score(plain_vectors, slices, heads, tests)
        return time.perf_counter() - t0

    score_pairs = interleave(ours_score, plain_score_timed, a.pairs)
    ratios["score"] = (f"{score_pairs.median:.2f}× ({min(score_pairs.ratios):.2f}–{max(score_pairs.ratios):.2f}, "
                       f"{len(score_pairs.ratios)} pairs)")
    print(f"score: {score_pairs.summary()} ({load()})", flush=True)

    def ours_diag(i):
        clear_diagnose_caches(store)
        t0 = time.perf_counter()
        diagnostics.diagnose(store, list(spec.tags), sizes)
        return time.perf_counter() - t0

    def plain_diag(i):
        t0 = time.perf_counter()
        plain_diagnose(store, ref, list(spec.tags), list(sizes))
        return time.perf_counter() - t0

    diag_pairs = interleave(ours_diag, plain_diag, a.pairs)
    ratios["diagnose"] = (f"{diag_pairs.median:.2f}× ({min(diag_pairs.ratios):.2f}–{max(diag_pairs.ratios):.2f}, "
                          f"{len(diag_pairs.ratios)} pairs; ours also: pixel probe, duplicates, Fréchet, spectra)")
    print(f"diagnose: {diag_pairs.summary()} ({load()})", flush=True)

    scaling = None
    if not a.no_scaling:
        images = [im for im in store.list_images(include_rejected=False) if im["source"] in ("synthetic", "real")]
        half = sorted(images, key=lambda im: im["id"])[::2]
        with store.tx():
            for im in half:
                store.set_rejected(im["id"], True)
        t_half = ours_diag(0)
        with store.tx():
            for im in half:
                store.set_rejected(im["id"], False)
        t_full = ours_diag(0)
        scaling = (len(images) - len(half), t_half, len(images), t_full)
        print(f"diagnose scaling: {scaling[0]} images {t_half:.1f} s, {scaling[2]} images {t_full:.1f} s → "
              f"{t_full / t_half:.2f}× ({load()})", flush=True)

    print()
    print(stages.table(ratios))
    total = sum(s for n, s, _, _ in stages.rows if n != "diagnose")
    train_s = train_pairs.a and sorted(train_pairs.a)[len(train_pairs.a) // 2]
    diag_s = dict((n, s) for n, s, _, _ in stages.rows)["diagnose"]
    print()
    print("goals (taken under the load shown; a quiet machine is faster):")
    print(f"  train once embedded ≤ 60 s: {train_s:.1f} s {'yes' if train_s <= 60 else 'NO'}; "
          f"≤ 1.5× plain: {train_pairs.median:.2f}× {'yes' if train_pairs.median <= 1.5 else 'NO'}")
    print(f"  whole experiment ≤ 600 s: {total:.1f} s {'yes' if total <= 600 else 'NO'}")
    print(f"  diagnose ≤ 120 s on {n_diag} images: {diag_s:.1f} s {'yes' if diag_s <= 120 else 'NO'}")
    if scaling:
        r = scaling[3] / scaling[1]
        print(f"  diagnose on twice the images ≤ 2.2×: {r:.2f}× {'yes' if r <= 2.2 else 'NO'}")
    print(machine())
    store.close()
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
