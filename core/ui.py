"""The only Streamlit-aware module in core: cached getters, the job worker, progress and error display.

Pages call :func:`store` for the store (one per process and home, with its job worker started),
wrap calls into core in :func:`user_errors`, and show a running job with :func:`job_status`.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import streamlit as st

from . import config, jobs
from .errors import UserError
from .store import Store


def _secret_lookup(name: str) -> Optional[str]:
    """``st.secrets[name]`` — with no secrets file even a lookup raises, so guard it."""
    try:
        return st.secrets.get(name)
    except Exception:  # noqa: BLE001 - no secrets.toml, or a malformed one
        return None


config.register_secret_source(_secret_lookup)


@st.cache_resource(show_spinner=False)
def _store(home: str) -> Store:
    return Store(home)


@st.cache_resource(show_spinner=False)
def _worker(home: str) -> jobs.Worker:
    worker = jobs.Worker(_store(home))
    worker.start()
    return worker


@st.cache_resource(show_spinner=False)
def device() -> str:
    return config.device()


def store() -> Store:
    """The store for ``SYNTHLAB_HOME``; starts this process's job worker on first use."""
    home = str(config.home())
    s = _store(home)
    worker = _worker(home)
    if not worker.is_alive():
        _worker.clear()
        _worker(home)
    return s


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a core :class:`UserError` as ``st.error`` instead of a traceback."""
    try:
        yield
    except UserError as exc:
        st.error(str(exc), icon="⚠️")


def sidebar() -> None:
    s = store()
    with st.sidebar:
        st.caption("Store")
        st.code(str(s.root), language=None)
        st.caption(f"Device: **{device()}**")
        running = jobs.list_jobs(s, status="running", limit=5)
        queued = jobs.list_jobs(s, status="queued", limit=50)
        st.caption(f"Jobs: {len(running)} running, {len(queued)} queued")
        azure = config.setting("VISION_TRAINING_KEY")
        st.caption(f"Azure Custom Vision key: {config.mask(azure)}")


_STEP = re.compile(r"step (\d+)/(\d+)")


def _units(job: dict) -> float:
    """Work done in items, counting the steps of the item in progress (``… step 3/25``)."""
    m = _STEP.search(job.get("message") or "")
    part = int(m.group(1)) / max(int(m.group(2)), 1) if m else 0.0
    return job["done"] + min(part, 1.0)


def rate_text(job: dict, first: Optional[tuple[float, float]], clock: float) -> tuple[str, Optional[tuple]]:
    """Rate and ETA from work only: ``first`` is ``(clock, units)`` of the first poll that saw work under
    way (None before); a model load is its own phase (the job's message says ``loading …``) and never
    counts toward the rate. Returns the text and the ``first`` to keep for the next poll."""
    if (job.get("message") or "").startswith("loading"):
        return " · loading the model", None
    units = _units(job)
    if units <= 0 and first is None:
        return "", None
    if first is None:
        return " · measuring the rate…", (clock, units)
    elapsed = clock - first[0]
    if elapsed < 0.5 or units <= first[1]:
        return " · measuring the rate…", first
    rate = (units - first[1]) / elapsed
    remaining = max(job["total"] - units, 0) / rate
    return f" · {rate:.2f}/s · ETA {remaining:.0f} s", first


def _rate(job: dict) -> str:
    starts = st.session_state.setdefault("_job_rate_start", {})
    text, starts[job["id"]] = rate_text(job, starts.get(job["id"]), time.monotonic())
    return text


def job_status(job_id: int, *, key: str, on_done: Callable[[dict], None] | None = None) -> None:
    """Live progress of one job in a fragment that reruns itself every second while the job runs.

    When the job ends the whole page reruns once (so galleries and tables refresh); Cancel works
    from here. A closed tab or a rerun does not stop the job: it lives in the store.
    """

    @st.fragment(run_every=1.0)
    def _show() -> None:
        s = store()
        job = jobs.get_job(s, job_id)
        status = job["status"]
        total = max(job["total"], 1)
        label = f"Job {job_id} ({job['kind']}): {status} — {job['done']}/{job['total']} {job['message']}"
        if status in jobs.ACTIVE:
            st.progress(min(job["done"] / total, 1.0), text=label + _rate(job))
            if st.button("Cancel", key=f"{key}-cancel-{job_id}"):
                jobs.cancel(s, job_id)
                st.rerun(scope="fragment")
            return
        if status == "done":
            st.success(label)
        elif status == "cancelled":
            st.warning(label)
        else:
            st.error(f"Job {job_id} failed: {job['error']}")
        seen = st.session_state.setdefault("_jobs_seen_finished", set())
        if job_id not in seen:
            seen.add(job_id)
            if on_done:
                on_done(job)
            st.rerun(scope="app")

    _show()


def wait_for(job_id: int, timeout: float = 60) -> dict:
    """Block until a job ends (used where a page must show a result in the same run, and in tests)."""
    return jobs.wait(store(), job_id, timeout=timeout)


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f} s"


# -- image gallery (Generate page) ---------------------------------------------------------------

def paginate(total: int, *, key: str, page_size: int = 12) -> tuple[int, int]:
    """A page picker under a list of ``total`` items; returns ``(offset, limit)``."""
    pages = max((total + page_size - 1) // page_size, 1)
    page = 1
    if pages > 1:
        page = int(st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key=key))
    return (min(page, pages) - 1) * page_size, page_size


def image_caption(image: dict) -> str:
    """Prompt and seed for a generated image; the original file name for an imported one."""
    p = image.get("provenance") or {}
    if image["source"] == "synthetic":
        return f"{p.get('prompt') or '(no prompt)'} · seed {p.get('seed')}"
    return f"{image['source']}: {p.get('original_name') or image['id'][:12]}"


def gallery(s: Store, images: list[dict], *, key: str, columns: int = 4) -> None:
    """Images in a grid, each with its caption and a Reject / Restore button (the file stays on disk)."""
    if not images:
        st.info("No images match these filters yet.")
        return
    cols = st.columns(columns)
    for n, image in enumerate(images):
        with cols[n % columns]:
            st.image(image["path"], width="stretch")
            prefix = "**rejected** · " if image["rejected"] else ""
            st.caption(f"{prefix}{image['tag']} · {image_caption(image)}")
            if st.button("Restore" if image["rejected"] else "Reject", key=f"{key}-{image['id']}"):
                s.set_rejected(image["id"], not image["rejected"])
                st.rerun()


# -- Azure Custom Vision (Train page) --------------------------------------------------------------

def azure_panel(s: Store, slice_refs: list, params: dict) -> None:
    """The Train page's Azure box: connection status, settings (keys masked), the sweep's quota plan,
    and a cleanup button for the projects this store created. One call into core."""
    from .backends import azure

    info = azure.panel(s, slice_refs, params)
    connection = info["connection"]
    if connection["ok"]:
        st.success(f"Azure Custom Vision: {connection['message']} · predictions: {connection['prediction']}")
    else:
        st.error(f"Azure Custom Vision: {connection['message']}")
    plan = info["plan"]
    if info["plan_error"]:
        st.error(info["plan_error"])
    elif plan:
        st.caption(f"Quota plan, tier {plan['tier']}: {plan['projects']} new project(s) "
                   f"(one per nested series), {plan['iterations']} iteration(s), {plan['images']} image(s), "
                   f"{plan['tags']} tag(s)" + (f"; the resource has {plan['resource_projects']} project(s)"
                                              if plan["resource_projects"] is not None else ""))
        for message in plan["errors"]:
            st.error(message)
        for message in plan["warnings"]:
            st.warning(message)
    with st.expander("Azure settings and projects"):
        st.table([{"setting": k, "value": v} for k, v in connection["settings"].items()])
        if info["projects"]:
            st.dataframe(info["projects"], hide_index=True, key="az_projects")
            sweeps = sorted({p["sweep"] for p in info["projects"]})
            sweep = st.selectbox("Delete the Azure projects of", sweeps, key="az_cleanup_sweep")
            if st.button("Delete these Azure projects", key="az_cleanup"):
                with user_errors():
                    done = azure.cleanup(s, sweep)
                    st.success(f"Deleted {len(done['deleted'])} Azure project(s) of {sweep}")


# -- links and batches ------------------------------------------------------------------------------

def link(page: str, label: str, icon: str | None = None) -> None:
    """A link to another page of the app (``pages/x.py``); a plain caption where the page is run on its own
    (AppTest of one page file has no navigation to link into)."""
    from streamlit.errors import StreamlitPageNotFoundError

    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitPageNotFoundError:
        st.caption(f"→ {label}")


def go(page: str) -> None:
    """Switch to another page of the app; a no-op where the page runs on its own."""
    from streamlit.errors import StreamlitPageNotFoundError

    try:
        st.switch_page(page)
    except StreamlitPageNotFoundError:
        pass


def batch_progress(job_ids: list[int], *, key: str, unit: str = "images") -> None:
    """One overall bar across several jobs (e.g. a generation batch of many tags), beside their own bars."""
    ids = list(dict.fromkeys(job_ids))

    @st.fragment(run_every=1.0)
    def _show() -> None:
        s = store()
        batch = jobs.batch_totals(s, ids)
        text = (f"All {batch['jobs']} jobs: {batch['done']}/{batch['total']} {unit} · {batch['finished']} finished"
                + (f" · {batch['failed']} failed" if batch["failed"] else ""))
        st.progress(min(batch["done"] / max(batch["total"], 1), 1.0), text=text)

    _show()
