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

from core import config
from core.errors import NotFound, UserError
from core.redact import redact
from core.run import jobs, workspaces
from core.store.database import Store


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
def _fair_worker(home: str) -> jobs.FairWorker:
    watch = workspaces.work_watch(home)
    worker = jobs.FairWorker(lambda: watch.stores_with_work(worker.last), waiting=watch.others_queued,
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

AUTH_EXAMPLE = """[auth]
redirect_uri = "https://synthlab.example.com/oauth2callback"
cookie_secret = "a long random string"
client_id = "…"
client_secret = "…"
server_metadata_url = "https://accounts.google.com/.well-known/openid-configuration"
"""


def _auth_settings() -> Optional[dict]:
    """The ``[auth]`` section of ``st.secrets`` when it has what ``st.login`` needs, else None."""
    try:
        auth = st.secrets.get("auth")
    except Exception:  # noqa: BLE001 - no secrets.toml
        return None
    if not auth or not auth.get("redirect_uri") or not auth.get("cookie_secret"):
        return None
    return dict(auth)


def _auth_providers(auth: dict) -> list[Optional[str]]:
    named = [k for k, v in auth.items() if hasattr(v, "get")]
    return ([None] if auth.get("client_id") else []) + named


def _team_gate() -> str:
    auth = _auth_settings()
    if auth is None:
        def login_not_configured() -> None:
            st.title("Synthlab · team mode")
            st.error("Team mode needs a login, and none is configured. Add an [auth] section to "
                     ".streamlit/secrets.toml (or the host's secrets) for any OpenID Connect provider, then "
                     "restart:", icon="🔒")
            st.code(AUTH_EXAMPLE, language="toml")
            st.caption("redirect_uri is the app's own address + /oauth2callback. Without team mode, unset "
                       "SYNTHLAB_MODE (one local store) or set it to demo (a workspace per visitor).")

        _only_page(login_not_configured)
    import importlib.util

    if importlib.util.find_spec("authlib") is None:
        def authlib_missing() -> None:
            st.error("Team mode's login needs the Authlib package: pip install Authlib (see requirements.txt).")

        _only_page(authlib_missing)
    if not st.user.is_logged_in:
        def sign_in() -> None:
            st.title("Synthlab")
            st.write("Sign in to reach the team's experiment.")
            for provider in _auth_providers(auth) or [None]:
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


def _hosting_sidebar(s: Store) -> None:
    current = workspaces.mode()
    if current == "demo":
        workspace_id = st.session_state.get("_workspace", "")
        st.caption(f"Demo workspace **{workspace_id[:8]}…** — keep this page's link to come back to it; "
                   "nobody else can open it without the link.")
        st.caption("Demo limits: " + workspaces.Quotas.from_env().describe())
        st.button("New workspace", key="ws_new_sidebar", on_click=_start_new_workspace)
        if not config.setting("VISION_TRAINING_KEY"):
            st.caption("Azure Custom Vision: off in this demo (the host has set no keys).")
    elif current == "team":
        st.caption("Signed in as " + plain(st.session_state.get('_user', '?')))
        st.button("Log out", key="auth_logout", on_click=st.logout)


_MARKDOWN = re.compile(r"([\\`*_\[\]<>$~|#{}!]|(?<=[Ww]{3})\.|@)|(:)(?=[A-Za-z_/])|^(\s*)([-+=>]|\d+(?=[.)]))",
                       re.MULTILINE)


def plain(text: object) -> str:
    """User text (prompts, tag / slice / file names, error messages) made safe for any Streamlit element
    that renders markdown: every markdown and HTML character is backslash-escaped, so the text shows as
    typed — an ``![x](http://…)`` is never an image, a ``<b>`` never a tag, ``:red[x]`` never colour —
    and every known secret value is masked (:func:`core.redact.redact`)."""
    def escape(m: re.Match) -> str:
        if m.group(1) or m.group(2):
            return "\\" + (m.group(1) or m.group(2))
        lead, mark = m.group(3), m.group(4)
        return lead + (mark + "\\" if mark[0].isdigit() else "\\" + mark)

    return _MARKDOWN.sub(escape, redact(text))


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a core :class:`UserError` as ``st.error`` (as plain text, secrets masked) instead of a traceback."""
    try:
        yield
    except UserError as exc:
        st.error(plain(exc), icon="⚠️")


def sidebar() -> None:
    s = store()
    with st.sidebar:
        _hosting_sidebar(s)
        st.caption("Store")
        st.code(str(s.root), language=None)
        st.caption(f"Device: **{device()}**")
        running = jobs.list_jobs(s, status="running", limit=5)
        queued = jobs.list_jobs(s, status="queued", limit=50)
        st.caption(f"Jobs: {len(running)} running, {len(queued)} queued")
        from core.run import cluster

        st.caption(cluster.describe_status(cluster.engine_status()))
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
        label = f"Job {job_id} ({job['kind']}): {status} — {job['done']}/{job['total']} {plain(job['message'])}"
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
            st.error(f"Job {job_id} failed: {plain(job['error'])}")
        seen = st.session_state.setdefault("_jobs_seen_finished", set())
        if job_id not in seen:
            seen.add(job_id)
            if on_done:
                on_done(job)
            st.rerun(scope="app")

    _show()


def progress_bar(bar, what: str) -> Callable[[int, int, str], None]:
    """A core ``progress(done, total, message)`` callback that moves an ``st.progress`` bar."""
    def update(done: int, total: int, message: str = "") -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{what}: {done}/{total} {plain(message)}")

    return update


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
            st.caption(f"{prefix}{plain(image['tag'])} · {plain(image_caption(image))}")
            if st.button("Restore" if image["rejected"] else "Reject", key=f"{key}-{image['id']}"):
                s.set_rejected(image["id"], not image["rejected"])
                st.rerun()


# -- Azure Custom Vision (Train page) --------------------------------------------------------------

def label_issue_gallery(s: Store, issues: list[dict], *, key: str, limit: int = 24) -> None:
    """Suspected wrong labels as thumbnails, each with one-click *Reject* and *Relabel as …*."""
    from core.data import label_issues

    if not issues:
        st.caption("No suspected wrong labels.")
        return
    columns = st.columns(4)
    for n, issue in enumerate(issues[:limit]):
        image = s.query_one("SELECT id, rejected FROM images WHERE id = ?", (issue["image"],))
        if image is None:
            continue
        with columns[n % 4]:
            st.image(str(s.image_file(issue["image"])), width=96,
                     caption=plain(f"{issue['tag']} → {issue['suggested']}? ({issue['score']:.2f})"
                                   + (" · rejected" if image["rejected"] else "")))
            with user_errors():
                if st.button("Reject", key=f"{key}-reject-{n}", disabled=bool(image["rejected"])):
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
    if connection["ok"]:
        st.success(f"Azure Custom Vision: {plain(connection['message'])} · predictions: "
                   f"{plain(connection['prediction'])}")
    else:
        st.error(f"Azure Custom Vision: {plain(connection['message'])}")
    plan = info["plan"]
    if info["plan_error"]:
        st.error(plain(info["plan_error"]))
    elif plan:
        st.caption(f"Quota plan, tier {plan['tier']}: {plan['projects']} new project(s) "
                   f"(one per nested series), {plan['iterations']} iteration(s), {plan['images']} image(s), "
                   f"{plan['tags']} tag(s)" + (f"; the resource has {plan['resource_projects']} project(s)"
                                              if plan["resource_projects"] is not None else ""))
        for message in plan["errors"]:
            st.error(plain(message))
        for message in plan["warnings"]:
            st.warning(plain(message))
    with st.expander("Azure settings and projects"):
        st.table([{"setting": k, "value": redact(v)} for k, v in connection["settings"].items()])
        if info["projects"]:
            st.dataframe(info["projects"], hide_index=True, key="az_projects")
            sweeps = sorted({p["sweep"] for p in info["projects"]})
            sweep = st.selectbox("Delete the Azure projects of", sweeps, key="az_cleanup_sweep")
            if st.button("Delete these Azure projects", key="az_cleanup"):
                with user_errors():
                    done = azure_projects.cleanup(s, sweep)
                    st.success(f"Deleted {len(done['deleted'])} Azure project(s) of {plain(sweep)}")


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
