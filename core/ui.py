"""The only Streamlit-aware module in core: cached getters, the job worker, progress and error display.

Pages call :func:`store` for the store (one per process and home, with its job worker started),
wrap calls into core in :func:`user_errors`, and show a running job with :func:`job_status`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, suppress
from typing import Callable, Iterator, Optional

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from core import config
from core.errors import NotFound, UserError
from core.redact import plain, redact
from core.run import job_threads, jobs, workspaces
from core.store.database import Store
from core.views import axes, captions, status_lines
from core.views.job_rate import rate_text
from core.views.tables import MISSING


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
def _worker(home: str) -> job_threads.Worker:
    worker = job_threads.Worker(_store(home))
    worker.start()
    return worker


@st.cache_resource(show_spinner=False)
def device() -> str:
    return config.device()


def store() -> Store:
    """The store for ``SYNTHLAB_HOME`` (in demo mode: this visitor's workspace); starts the job worker."""
    home = str(config.home())
    if workspaces.is_demo():
        try:
            s = _workspace_store(home)
        except NotFound as exc:  # removed while this session had it open: the way out, never a traceback
            _no_workspace(exc)
        _ensure_worker(home, demo=True)
        return s
    s = _store(home)
    _ensure_worker(home, demo=False)
    return s


# -- the job worker: a thread in this process, or its own process (SYNTHLAB_WORKER=process) -----------

_process_checked: dict[str, float] = {}


@st.cache_resource(show_spinner=False)
def _fair_worker(home: str) -> job_threads.FairWorker:
    watch = workspaces.work_watch(home)
    worker = job_threads.FairWorker(lambda: watch.stores_with_work(worker.last), waiting=watch.others_queued,
                             housekeeping=lambda: workspaces.remove_idle(home=home))
    worker.start()
    return worker


def _ensure_worker(home: str, *, demo: bool) -> None:
    from core.run import worker

    if worker.worker_kind() == "process":
        if time.monotonic() - _process_checked.get(home, -1e9) > 5:  # a flock probe, at most every 5 s
            worker.ensure_running(home)
            _process_checked[home] = time.monotonic()
        return
    getter = _fair_worker if demo else _worker
    if not getter(home).is_alive():
        getter.clear()
        getter(home)


# -- demo mode: one workspace per visitor, its id in the URL ------------------------------------------

def _workspace_store(home: str) -> Store:
    """This visitor's workspace: ``?workspace=ID`` from the URL (or this session). With neither, nothing is
    created: :class:`NoWorkspaceYet` (the gate offers the button that creates one)."""
    wanted = st.query_params.get("workspace") or st.session_state.get("_workspace")
    if not wanted:
        raise workspaces.NoWorkspaceYet(workspaces.WELCOME)
    s = workspaces.open_store(wanted, home)  # NotFound for an unknown, removed or malformed id
    st.session_state["_workspace"] = wanted
    if st.query_params.get("workspace") != wanted:
        st.query_params["workspace"] = wanted
    return s


def _start_new_workspace() -> None:
    """The deliberate action that creates a workspace (counted against the server's hourly cap)."""
    st.query_params.clear()
    try:
        st.session_state["_workspace"] = st.query_params["workspace"] = workspaces.create(str(config.home()))
        st.session_state.pop("_workspace_error", None)
    except UserError as exc:
        st.session_state.pop("_workspace", None)
        st.session_state["_workspace_error"] = str(exc)


def _only_page(render: Callable[[], None]) -> None:
    """Show ``render`` as the app's only page and stop: nothing else is reachable (a bare stop before
    ``st.navigation`` would let Streamlit list the ``pages/`` folder in the sidebar)."""
    st.navigation([st.Page(render, title="Synthlab", default=True)], position="hidden").run()
    st.stop()


def _no_workspace(exc: NotFound) -> None:
    """The welcome (no id yet) or the missing-workspace message, and the button that makes a workspace; stops."""
    st.title("Synthlab demo")
    st.info(str(exc)) if isinstance(exc, workspaces.NoWorkspaceYet) else st.error(str(exc), icon="⚠️")
    if refused := st.session_state.get("_workspace_error"):
        st.error(refused, icon="⚠️")
    st.button("Start a new workspace", key="ws_new", type="primary", on_click=_start_new_workspace)
    st.stop()


def _demo_gate() -> None:
    home = str(config.home())
    try:
        _workspace_store(home)
    except NotFound as exc:
        _only_page(lambda e=exc: _no_workspace(e))
    _ensure_worker(home, demo=True)


# -- team mode: Streamlit's OIDC login ------------------------------------------------------------------

def _team_gate() -> str:
    auth = config.login_settings(lambda: st.secrets.get("auth"))
    if auth is None:
        def login_not_configured() -> None:
            st.title("Synthlab · team mode")
            st.error(config.AUTH_MISSING, icon="🔒")
            st.code(config.AUTH_EXAMPLE, language="toml")
            st.caption(config.AUTH_HINT)

        _only_page(login_not_configured)
    import importlib.util

    if importlib.util.find_spec("authlib") is None:
        _only_page(lambda: st.error("Team mode's login needs the Authlib package: pip install Authlib (see requirements.txt)."))
    if not st.user.is_logged_in:
        def sign_in() -> None:
            st.title("Synthlab")
            st.write("Sign in to reach the team's experiment.")
            for provider in config.auth_providers(auth) or [None]:
                label = "Log in" if provider is None else f"Log in with {provider}"
                st.button(label, key=f"auth_login_{provider}", type="primary",
                          on_click=st.login, args=() if provider is None else (provider,))

        _only_page(sign_in)
    who = st.user.get("email") or st.user.get("name") or st.user.get("sub") or "signed-in user"
    jobs.set_actor(str(who))
    return str(who)


def gate() -> None:
    """Call first in the entry script: in team mode only signed-in users get past it; in demo mode it
    resolves the visitor's workspace (and stops with a way out when the URL names none that exists)."""
    jobs.set_actor(None)
    current = workspaces.mode()
    if current == "team":
        st.session_state["_user"] = _team_gate()
    elif current == "demo":
        _demo_gate()


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a core :class:`UserError` as ``st.error`` (as plain text, secrets masked) instead of a traceback."""
    try:
        yield
    except UserError as exc:
        st.error(plain(exc), icon="⚠️")


def sidebar() -> None:
    """Where the store is (never shown to a public demo visitor), who is signed in or which demo workspace this
    is, the device, the jobs, Ray and Azure (named once)."""
    s, current = store(), workspaces.mode()
    with st.sidebar:
        if current != "demo":
            st.caption("Store")
            st.code(str(s.root), language=None)
        lines = status_lines.sidebar_lines(s, current, workspace_id=st.session_state.get("_workspace", ""),
                                           user=st.session_state.get("_user", "?"), device=device())
        for n, line in enumerate(lines):
            st.caption(line)
            if n == 0 and current == "demo":
                st.button("New workspace", key="ws_new_sidebar", on_click=_start_new_workspace)
            elif n == 0 and current == "team":
                st.button("Log out", key="auth_logout", on_click=st.logout)


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
        label = f"Job {job_id} ({job['kind']}): {status} — {job['done']}/{job['total']} {plain(job['message'])}"
        if status in jobs.ACTIVE:
            starts = st.session_state.setdefault("_job_rate_start", {})
            rate, starts[job_id] = rate_text(job, starts.get(job_id), time.monotonic())
            st.progress(min(job["done"] / max(job["total"], 1), 1.0), text=label + rate)
            if st.button("Cancel", key=f"{key}-cancel-{job_id}"):
                jobs.cancel(s, job_id)
                st.rerun(scope="fragment")
            return
        ended = {"done": st.success, "cancelled": st.warning}.get(status)
        ended(label) if ended else st.error(f"Job {job_id} failed: {plain(job['error'])}")
        seen = st.session_state.setdefault("_jobs_seen_finished", set())
        if job_id not in seen:
            seen.add(job_id)
            if on_done:
                on_done(job)
            st.rerun(scope="app")

    _show()


def sample_box(s: Store, *, key: str, found=None, button: bool = True, pressed: bool = False) -> None:
    """The clothing sample wherever a page offers it (Overview, Data, Generate): a load's bar while it runs (it
    goes on when the page is left), what is missing of one that stopped half way, or the sizes on an empty store;
    and the button that loads or finishes it (``pressed``: the page's own button was)."""
    from core.data import sample_jobs
    from core.data.samples import MAX_PER_TAG

    found = found or sample_jobs.state(s)
    if ended := sample_jobs.ended(s, st.session_state.get("_sample_job")):  # the load this session started
        st.session_state.pop("_sample_job")
        {"success": st.success, "warning": st.warning}.get(ended[0], st.error)(plain(ended[1]))
    if not (found.empty or found.incomplete):
        return
    st.subheader(found.title)
    if found.job:
        return job_status(found.job, key=f"{key}_sample_job")
    st.caption(found.why)
    plan = dict(found.plan)
    if found.empty:
        c1, c2 = st.columns(2)
        plan["per_tag"] = c1.number_input("Real photos per tag", 1, MAX_PER_TAG["train"], plan["per_tag"], key=f"{key}_per_tag")
        plan["test_per_tag"] = c2.number_input("Test photos per tag", 0, MAX_PER_TAG["t10k"], plan["test_per_tag"],
                                               key=f"{key}_test_per_tag")
    if pressed or (button and st.button(found.label, type="primary", key=f"{key}_sample")):
        with user_errors():
            st.session_state["_sample_job"] = sample_jobs.submit_sample(s, **plan)
            st.rerun()


# -- image gallery (Generate page) ---------------------------------------------------------------

def paginate(total: int, *, key: str, page_size: int = 12) -> tuple[int, int]:
    """A page picker under a list of ``total`` items; returns ``(offset, limit)``."""
    pages = max((total + page_size - 1) // page_size, 1)
    page = int(st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key=key)) if pages > 1 else 1
    return (min(page, pages) - 1) * page_size, page_size


def gallery(s: Store, tags: list[str], *, key: str = "gal", columns: int = 4) -> None:
    """The Generate page's gallery: tag, source and rejected filters over a page of images in a grid, each with
    its caption and a Reject / Restore button (the file stays on disk)."""
    from core.store.records import SOURCES

    f1, f2, f3 = st.columns(3)
    tag, source = f1.selectbox("Tag", ["all"] + tags, key="gal_tag"), f2.selectbox("Source", ["all", *SOURCES], key="gal_source")
    show_rejected = f3.checkbox("Show rejected", value=False, key="gal_rejected")
    with user_errors():
        tag_arg, source_arg = (None if tag == "all" else tag), (None if source == "all" else source)
        total = s.count_images(tag_arg, source_arg, include_rejected=show_rejected)
        st.caption(f"{total} image(s)")
        offset, limit = paginate(total, key=f"gal_page_{tag}_{source}_{show_rejected}")
        images = s.list_images(tag_arg, source_arg, include_rejected=show_rejected, limit=limit, offset=offset)
        if not images:
            st.info("No images match these filters yet.")
        cols = st.columns(columns) if images else []
        for n, image in enumerate(images):
            with cols[n % columns]:
                st.image(image["path"], width="stretch")
                st.caption(("**rejected** · " if image["rejected"] else "")
                           + f"{plain(image['tag'])} · {plain(captions.image_caption(image))}")
                if st.button("Restore" if image["rejected"] else "Reject", key=f"{key}-{image['id']}"):
                    s.set_rejected(image["id"], not image["rejected"])
                    st.rerun()


def label_issue_gallery(s: Store, issues: list[dict], *, key: str, limit: int = 24) -> None:
    """Suspected wrong labels as thumbnails, each with one-click *Reject* and *Relabel as …*."""
    from core.data import label_issues

    if not issues:
        st.caption("No suspected wrong labels.")
        return
    columns = st.columns(4)
    for n, issue, rejected, caption in label_issues.gallery_items(s, issues, limit):
        with columns[n % 4]:
            st.image(str(s.image_file(issue["image"])), width=96, caption=plain(caption))
            with user_errors():
                if st.button("Reject", key=f"{key}-reject-{n}", disabled=rejected):
                    s.set_rejected(issue["image"])
                    st.rerun()
                if st.button(f"Relabel as {issue['suggested']}", key=f"{key}-relabel-{n}"):
                    label_issues.relabel(s, issue["image"], issue["suggested"])
                    st.rerun()
    if len(issues) > limit:
        st.caption(f"… and {len(issues) - limit} more (see `python -m core diagnose --json`).")


def azure_panel(s: Store, slice_refs: list, params: dict) -> None:
    """The Train page's Azure box: connection status, settings (keys masked), the sweep's quota plan,
    and a cleanup button for the projects this store created. One call into core."""
    from core.train.backends import azure_projects, azure_status

    info = azure_status.panel(s, slice_refs, params)
    connection = info["connection"]
    (st.success if connection["ok"] else st.error)(plain(azure_status.connection_line(connection)))
    plan = info["plan"]
    if info["plan_error"]:
        st.error(plain(info["plan_error"]))
    elif plan:
        st.caption(azure_status.plan_caption(plan))
        for show, message in [(st.error, m) for m in plan["errors"]] + [(st.warning, m) for m in plan["warnings"]]:
            show(plain(message))
    with st.expander("Azure settings and projects"):
        st.table([{"setting": k, "value": redact(v)} for k, v in connection["settings"].items()])
        if info["projects"]:
            st.dataframe(info["projects"], hide_index=True, key="az_projects", placeholder=MISSING)
            sweeps = sorted({p["sweep"] for p in info["projects"]})
            sweep = st.selectbox("Delete the Azure projects of", sweeps, key="az_cleanup_sweep")
            if st.button("Delete these Azure projects", key="az_cleanup"):
                with user_errors():
                    done = azure_projects.cleanup(s, sweep)
                    st.success(f"Deleted {len(done['deleted'])} Azure project(s) of {plain(sweep)}")


def link(page: str, label: str, icon: str | None = None) -> None:
    """A link to another page of the app (``pages/x.py``); a plain caption where the page is run on its own
    (AppTest of one page file has no navigation to link into)."""
    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitPageNotFoundError:
        st.caption(f"→ {label}")


def go(page: str) -> None:
    """Switch to another page of the app; a no-op where the page runs on its own."""
    with suppress(StreamlitPageNotFoundError):
        st.switch_page(page)


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


# -- page adapters: the Train page's run card and quick test, the Results page's charts and report ---------

def report_box(s: Store, run_ids: list[int], comparisons: list) -> None:
    """Build the HTML report of these runs (and the comparisons picked for it), then offer its download."""
    from pathlib import Path

    from core.views.report import default_report_path, write_report

    if st.button("Build report", key="build-report", type="primary"):
        with user_errors(), st.spinner("Writing the report…"):
            st.session_state["results-report"] = str(write_report(s, default_report_path(s), run_ids=run_ids,
                                                                  comparisons=comparisons))
    if st.session_state.get("results-report"):
        report = Path(st.session_state["results-report"])
        st.success(f"Report written to {plain(status_lines.shown_path(report))}")
        st.download_button("Download report (HTML)", lambda: report.read_bytes(), file_name=report.name,
                           mime="text/html", key="report-download", on_click="ignore", icon=":material/download:")


def chart(fig, key: str, **select):
    """A chart with its HTML download (plotly.js embedded); PNG via the chart toolbar's camera button."""
    event = st.plotly_chart(fig, key=key, config={"displaylogo": False, "toImageButtonOptions": {"filename": key}},
                            **select)
    for note in axes.figure_notes(fig):  # warnings under the chart, never over its axis
        st.caption(plain(note))
    st.download_button("Download chart (HTML)", lambda: fig.to_html(include_plotlyjs=True), file_name=f"{key}.html",
                       mime="text/html", key=f"{key}-html", on_click="ignore", icon=":material/download:")
    return event


def run_card(result: dict, figure) -> None:
    """One scored run: headline numbers, the per-tag table and the confusion ``figure``."""
    from core.views import run_views

    with st.container(border=True, key="tr_card_box"):
        for column, (label, value) in zip(st.columns(3), run_views.card_metrics(result)):
            column.metric(label, value, help="on the test photos" if label == "Accuracy" else None)
        left, right = st.columns([2, 3])
        left.dataframe(run_views.card_tag_rows(result), hide_index=True, key="tr_card_tags", placeholder=MISSING)
        right.plotly_chart(figure, key="tr_card_confusion")
        if result.get("stale"):
            st.caption("Scored on an older set of test photos; it is scored again automatically.")


def quick_test_photo(s: Store) -> str | bytes | None:
    """The quick test's photo: a stored test photo's id, or an upload's bytes (never stored); None yet."""
    from core.views import run_views

    if st.radio("Photo", run_views.PHOTO_SOURCES, horizontal=True, key="qt_where") == run_views.PHOTO_SOURCES[1]:
        upload = st.file_uploader("Drop a photo", type=list(run_views.UPLOAD_TYPES), key="qt_upload")
        return upload.getvalue() if upload else None
    labels = run_views.test_photo_labels(s)
    if not labels:
        st.info("No test photos: add some on the Data page (role: test), or drop a photo instead.")
        return None
    return st.selectbox("Test photo", list(labels), format_func=labels.get, key="qt_image")


def local_params(c2, c3) -> dict:
    """The Train page's local-backend controls (encoder in ``c2``, mode in ``c3``, parameters in an
    expander) as training parameters."""
    from core.train.backends.local import MODE_LABELS
    from core.views import run_views

    choice = c2.selectbox("Encoder", run_views.ENCODER_CHOICES, key="tr_encoder")
    path = c2.text_input("Folder or hub id", key="tr_encoder_path") if choice == run_views.OTHER else ""
    params: dict = {"encoder": run_views.encoder_param(choice, path)}
    cnn = choice == run_views.CNN
    if not cnn:
        params["mode"] = c3.selectbox("Mode", list(MODE_LABELS), format_func=MODE_LABELS.get, key="tr_mode")
    else:
        st.caption(run_views.CNN_NOTE)
        if c3.checkbox("Train at the slice's own size (up to 1024 px)", key="tr_native"):
            params["image_size"] = "native"
    with st.expander("Parameters"):
        p1, p2, p3 = st.columns(3)
        params["seed"] = p1.number_input("Seed", value=0, step=1, key="tr_seed")
        if cnn or params.get("mode") == "finetune":
            params["epochs"] = p2.number_input("Epochs", 1, 1000, run_views.default_epochs(choice), key=f"tr_epochs_{cnn}")
        if not cnn and params.get("mode", "probe") == "probe":
            params["C"] = p3.number_input("C (inverse regularisation)", 1e-4, 1e4, 1.0, format="%.4g", key="tr_c")
    return params


def image_picker(s: Store, shown: list[dict], flips: dict[str, int], *, key: str) -> None:
    """The Results page's test images, eight a row, each with its flip count and a Pick button that puts
    its id in ``st.session_state[key]``."""
    for row in range(0, len(shown), 8):
        for col, im in zip(st.columns(8), shown[row:row + 8]):
            col.image(str(s.image_file(im["image"])), caption=f"{plain(im['tag'])} · {flips.get(im['image'], 0)}×",
                      width="stretch")
            picked = im["image"] == st.session_state[key]
            if col.button("Picked" if picked else "Pick", key=f"pick-{im['image']}",
                          type="primary" if picked else "secondary", width="stretch"):
                st.session_state[key] = im["image"]
                st.rerun()


def score_button(s: Store, label: str, key: str, run_ids: list[int] | None = None) -> None:
    """A button that scores ``run_ids`` (default: every finished run) on the test photos now, then reruns."""
    from core.analysis import autoeval

    if st.button(label, key=key):
        with user_errors(), st.spinner("Scoring the test images…"):
            autoeval.rescore(s, run_ids)
            st.rerun()
