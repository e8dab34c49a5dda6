"""The clothing sample as a job: a load started from a page survives leaving it, moves its bar photo by photo,
counts in the sidebar's jobs, and a load that stopped half way (cancelled, failed, its process killed) is
finished from where it stopped — photos already imported are skipped, never stored twice (content hash).

A load's *plan* (photos per tag, test photos per tag, size, the optional extra classes) is its job's params,
so the pages can tell an incomplete sample from a finished one: :func:`state`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

from core.data import samples
from core.errors import NotFound, UserError
from core.progress import Progress
from core.run import jobs
from core.store.database import Store

JOB_KIND = "sample"
LOADERS = ("experiment",)
"""Job kinds that load the sample as one of their stages (``experiment run``)."""
SOURCES = ("real", "test")


def plan(per_tag: int = samples.DEFAULT_PER_TAG, test_per_tag: int = samples.DEFAULT_TEST_PER_TAG,
         size: int = samples.DEFAULT_SIZE, more_shoes: bool = False, more_shirts: bool = False) -> dict:
    """A checked load plan (an :class:`~core.errors.InvalidInput` for numbers out of range), as job params."""
    return {"per_tag": samples.check_number("per_tag", per_tag, 1, samples.MAX_PER_TAG["train"]),
            "test_per_tag": samples.check_number("test_per_tag", test_per_tag, 0, samples.MAX_PER_TAG["t10k"]),
            "size": samples.check_number("size", size, samples.ORIGINAL_SIZE, 1024),
            "more_shoes": bool(more_shoes), "more_shirts": bool(more_shirts)}


def submit_sample(store: Store, *, claim: bool = False, **fields) -> int:
    """Check the plan, the photos' source and the demo quota (user errors raise here, before anything is
    written or queued), then queue the load; the same plan again returns the load already queued or running."""
    params = plan(**fields)
    samples.check_source()
    samples.check_quota(store, **params)
    return jobs.submit(store, JOB_KIND, params, claim=claim)


def run_sample_job(ctx) -> dict:
    """Job handler (``registry.HANDLERS["sample"]``): the load, with every photo on the job's bar (and a
    cancel check per photo)."""
    return samples.load_clothing_sample(ctx.store, progress=ctx.progress, **ctx.params)


def load_sample(store: Store, progress: Progress = None, **fields) -> dict:
    """Run a load in this thread as a job (the CLI's path: a killed command leaves a job the app or the same
    command finishes). Returns the load's result with ``job``."""
    job_id = submit_sample(store, claim=True, **fields)
    job = jobs.run_here(store, job_id, progress)
    if job["status"] != "done":
        have, total = loaded(store, job["params"])
        raise UserError(f"the clothing sample (job {job_id}) was {job['status']} at {have} of {total} photos: "
                        f"{job['error']}; run the same command again to finish it")
    return {"job": job_id, **job["result"]}


def loaded(store: Store, params: dict) -> tuple[int, int]:
    """``(photos of the plan in the store, photos the plan has)``."""
    found = SampleState(plan=plan(**params), have=_have(store, _names(params), params["size"]))
    wanted = {"real": found.plan["per_tag"], "test": found.plan["test_per_tag"]}
    return (sum(min(c[s], wanted[s]) for c in found.have.values() for s in SOURCES),
            len(found.have) * sum(wanted.values()))


def outcome(store: Store, job: dict) -> tuple[str, str]:
    """How a finished load reads: ``("success" | "warning" | "error", line)``."""
    if job["status"] == "done":
        r = job["result"] or {}
        return "success", f"Clothing sample loaded: {r.get('imported', 0)} photos ({r.get('duplicates', 0)} already there)"
    if job["status"] == "cancelled":
        have, total = loaded(store, job["params"])
        return "warning", (f"Clothing sample stopped at {have} of {total} photos: finish it when you like — the "
                           "photos already loaded are kept")
    return "error", f"The clothing sample did not load: {job['error']}"


def ended(store: Store, job_id: Optional[int]) -> Optional[tuple[str, str]]:
    """:func:`outcome` of load ``job_id`` once it has ended; None while it runs (or for no job)."""
    try:
        job = jobs.get_job(store, job_id) if job_id else None
    except NotFound:  # another store (a demo workspace left for another)
        return None
    return outcome(store, job) if job and job["status"] not in jobs.ACTIVE else None


# -- where the sample stands --------------------------------------------------------------------------

@dataclass(frozen=True)
class SampleState:
    """``plan``: what the latest load asked for (or what the stored photos imply); ``have``: ``{tag: {source:
    n}}`` of sample photos at the plan's size; ``job``: the load queued or running now; ``empty``: no tags
    at all (the sample is offered as the first step)."""

    plan: dict
    have: dict[str, dict[str, int]]
    job: Optional[int] = None
    empty: bool = False
    busy: bool = False  # another job that loads the sample itself (:data:`LOADERS`) runs: nothing to offer now

    def short(self) -> dict[str, dict[str, int]]:
        """``{tag: {source: wanted}}`` for each tag and source with fewer photos than the plan."""
        wanted = {"real": self.plan["per_tag"], "test": self.plan["test_per_tag"]}
        return {t: {s: wanted[s] for s in SOURCES if c[s] < wanted[s]} for t, c in self.have.items()
                if any(c[s] < wanted[s] for s in SOURCES)}

    @property
    def incomplete(self) -> bool:
        return not self.empty and (self.job is not None or (not self.busy and bool(self.short())))

    def missing(self) -> str:
        """``jeans 120/200 real, 0/50 test · shoes 0/200 real, 0/50 test``."""
        return " · ".join(f"{t} " + ", ".join(f"{self.have[t][s]}/{n} {s}" for s, n in by.items())
                          for t, by in self.short().items())

    @property
    def title(self) -> str:
        if self.job:
            return "Loading the clothing sample"
        return "Finish loading the clothing sample" if self.incomplete else "Start with the clothing sample"

    @property
    def label(self) -> str:
        return "Finish loading the sample" if self.incomplete else "Load the clothing sample"

    @property
    def why(self) -> str:
        if self.incomplete:
            return (f"The clothing sample stopped half way — {self.missing()}. Finishing imports only what is "
                    "missing; the photos already there are kept, never stored twice.")
        return ("Real photos of jeans, shoes, shirts and other (Fashion-MNIST, upscaled) as real and test photos, "
                "with a prompt per tag — enough to train the real-only baseline before generating anything.")


def _names(params: dict) -> list[str]:
    return [t.name for t in samples.sample_tags(params.get("more_shoes", False), params.get("more_shirts", False))]


def _have(store: Store, names: list[str], size: int) -> dict[str, dict[str, int]]:
    have = {n: {s: 0 for s in SOURCES} for n in names}
    for tag, source, _, _ in samples.stored_rows(store, size):
        if tag in have:
            have[tag][source] += 1
    return have


def _implied_plan(store: Store) -> Optional[dict]:
    """With no load on record (a store from before loads were jobs, or the experiment's own load): the plan the
    stored sample photos imply — the most any tag has, and test photos even when none came."""
    rows = store.query("SELECT tag, source, width, COUNT(*) AS n FROM images WHERE source IN ('real', 'test') "
                       "AND json_extract(extra, '$.dataset') = 'fashion-mnist' GROUP BY tag, source, width")
    if not rows:
        return None
    size = Counter({r["width"]: 0 for r in rows})
    for r in rows:
        size[r["width"]] += r["n"]
    width = size.most_common(1)[0][0]
    most = {s: max([r["n"] for r in rows if r["source"] == s and r["width"] == width] or [0]) for s in SOURCES}
    return plan(max(most["real"], 1), most["test"] or samples.DEFAULT_TEST_PER_TAG, width)


def state(store: Store) -> SampleState:
    """Where the clothing sample stands: its plan, the photos per tag, the load running now."""
    last = next(iter(jobs.list_jobs(store, kind=JOB_KIND, limit=1)), None)
    tags = store.tag_names()
    found = dict(last["params"]) if last else _implied_plan(store)
    active = last["id"] if last and last["status"] in jobs.ACTIVE else None
    busy = active is None and any(j["status"] in jobs.ACTIVE for kind in LOADERS
                                  for j in jobs.list_jobs(store, kind=kind, limit=1))
    if found is None:
        return SampleState(plan=plan(), have={}, job=active, empty=not tags and active is None and not busy)
    return SampleState(plan=plan(**found), have=_have(store, _names(found), found["size"]), job=active,
                       empty=not tags and active is None and not busy, busy=busy)
