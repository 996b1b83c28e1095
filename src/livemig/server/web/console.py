"""The console's routes, under ``/ui`` of the API server.

Every page reads the store the API serves and every form writes through the same checks as the
API (``livemig.server.writes``): an object that would not pass ``lint`` is not stored, and the
problems appear next to the fields they name. Pages that change by themselves (overview,
migrations) re-render a fragment whenever the store changes and push it over server-sent
events; htmx swaps it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from livemig.api.builders import migration_request
from livemig.api.loading import validate
from livemig.api.models import KINDS
from livemig.api.status import age, timestamp
from livemig.clock import Clock
from livemig.clusterview import cordon_node, drain_key
from livemig.errors import CancelRefused, Conflict, LivemigError, LoadError, NotFound
from livemig.inventory import Inventory
from livemig.lint import Severity, lint
from livemig.policy import ClusterConfig, DefaultsProfile, effective_configuration
from livemig.server.web import views
from livemig.server.web.sessions import COOKIE, CSRF_FIELD, CSRF_HEADER, Session, Sessions
from livemig.server.writes import cancel_migration, checked, one_migration_at_a_time
from livemig.store import Store

STATIC = Path(__file__).parent / "static"
#: Seconds between re-renders of a live view even when nothing was written (ages, elapsed).
REFRESH = 2.0
#: Seconds a burst of writes is given to settle before a live view is rendered again.
SETTLE = 0.25
HCO_NAMESPACE, HCO_NAME = "openshift-cnv", "kubevirt-hyperconverged"


@dataclass(frozen=True, slots=True)
class SettingField:
    name: str
    help: str
    boolean: bool = False
    integer: bool = False


SETTING_FIELDS = (
    SettingField("bandwidthPerMigration", "bytes per second, a quantity (64Mi); 0 = no limit"),
    SettingField("completionTimeoutPerGiB", "seconds allowed per GiB of data", integer=True),
    SettingField(
        "parallelMigrationsPerCluster", "migrations running at once in the cluster", integer=True
    ),
    SettingField(
        "parallelOutboundMigrationsPerNode", "migrations leaving one node at once", integer=True
    ),
    SettingField("progressTimeout", "seconds without progress before a cancel", integer=True),
    SettingField("allowPostCopy", "switch to post-copy at the completion timeout", boolean=True),
    SettingField(
        "network",
        "a dedicated migration network's name (nodes report theirs with --network); "
        "empty: the primary network",
    ),
)


def _field_errors(exc: LoadError, prefix: str = "") -> dict[str, str]:
    """Problems by field path (``spec.bandwidthPerMigration``); "" for the object as a whole."""
    out: dict[str, str] = {}
    for p in exc.problems:
        key = p.field or ""
        if prefix and key.startswith(prefix):
            key = "spec.liveMigrationConfig." + key[len(prefix) :]
        out.setdefault(key, p.message)
    return out


def _typed(value: str, integer: bool = False, boolean: bool = False) -> Any:
    """A form value as the YAML a user would write: digits are integers, true/false booleans;
    anything else stays a string, for the same validation (and message) as lint."""
    value = value.strip()
    if boolean and value in ("true", "false"):
        return value == "true"
    if integer and value.lstrip("-").isdigit():
        return int(value)
    return value


def policy_from_form(
    form: dict[str, Any], name: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The MigrationPolicy a form describes, and the problems only the form can see (a label
    value without a key)."""
    errors: dict[str, str] = {}

    def pairs(keys: list[str], values: list[str], where: str) -> dict[str, str]:
        out = {}
        for k, v in zip(keys, values, strict=False):
            k, v = k.strip(), v.strip()
            if not k and v:
                errors[where] = f"a value ({v!r}) needs a label key"
            elif k:
                out[k] = v
        return out

    spec: dict[str, Any] = {
        "selectors": {
            "namespaceSelector": pairs(
                form.get("ns_key", []), form.get("ns_value", []), "spec.selectors.namespaceSelector"
            ),
            "virtualMachineInstanceSelector": pairs(
                form.get("vm_key", []),
                form.get("vm_value", []),
                "spec.selectors.virtualMachineInstanceSelector",
            ),
        }
    }
    for selector in ("namespaceSelector", "virtualMachineInstanceSelector"):
        if not spec["selectors"][selector]:
            del spec["selectors"][selector]
    bandwidth = _one(form, "bandwidth").strip()
    if bandwidth:
        spec["bandwidthPerMigration"] = bandwidth + _one(form, "bandwidth_unit")
    completion = _one(form, "completionTimeoutPerGiB")
    if completion.strip():
        spec["completionTimeoutPerGiB"] = _typed(completion, integer=True)
    for flag in ("allowAutoConverge", "allowPostCopy", "allowWorkloadDisruption"):
        value = _one(form, flag)
        if value:
            spec[flag] = _typed(value, boolean=True)
    policy = {
        "apiVersion": "migrations.kubevirt.io/v1alpha1",
        "kind": "MigrationPolicy",
        "metadata": {"name": (name or _one(form, "name")).strip()},
        "spec": spec,
    }
    return policy, errors


def _form_echo(form: dict[str, Any]) -> dict[str, Any]:
    """The policy form as typed, to show again next to its errors."""

    def pairs(keys: str, values: str) -> list[tuple[str, str]]:
        return [
            (k, v) for k, v in zip(form.get(keys, []), form.get(values, []), strict=False) if k or v
        ]

    return {
        "name": _one(form, "name"),
        "ns_pairs": pairs("ns_key", "ns_value"),
        "vm_pairs": pairs("vm_key", "vm_value"),
        "bandwidth": _one(form, "bandwidth"),
        "bandwidth_unit": _one(form, "bandwidth_unit"),
        "completionTimeoutPerGiB": _one(form, "completionTimeoutPerGiB"),
        **{
            f: _one(form, f)
            for f in ("allowAutoConverge", "allowPostCopy", "allowWorkloadDisruption")
        },
    }


def _one(form: dict[str, Any], key: str) -> str:
    value = form.get(key) or [""]
    return str(value[0] if isinstance(value, list) else value)


def _form_state(policy: dict[str, Any]) -> dict[str, Any]:
    """A stored policy as the form shows it."""
    spec = policy.get("spec") or {}
    selectors = spec.get("selectors") or {}
    bandwidth, unit = str(spec.get("bandwidthPerMigration") or ""), ""
    for u in ("Mi", "Gi", "Ki", "M", "G"):
        if bandwidth.endswith(u) and bandwidth[: -len(u)].replace(".", "", 1).isdigit():
            bandwidth, unit = bandwidth[: -len(u)], u
            break
    else:
        unit = "" if bandwidth else "Mi"

    def flag(key: str) -> str:
        value = spec.get(key)
        return (
            ""
            if value is None
            else ("true" if value is True else "false" if value is False else str(value))
        )

    return {
        "name": (policy.get("metadata") or {}).get("name", ""),
        "ns_pairs": list((selectors.get("namespaceSelector") or {}).items()),
        "vm_pairs": list((selectors.get("virtualMachineInstanceSelector") or {}).items()),
        "bandwidth": bandwidth,
        "bandwidth_unit": unit,
        "completionTimeoutPerGiB": str(spec.get("completionTimeoutPerGiB", "")),
        "allowAutoConverge": flag("allowAutoConverge"),
        "allowPostCopy": flag("allowPostCopy"),
        "allowWorkloadDisruption": flag("allowWorkloadDisruption"),
    }


def mount_console(
    app: FastAPI,
    store: Store,
    token: str,
    stopping: asyncio.Event,
    clock: Clock,
    defaults: DefaultsProfile,
    off: Callable[..., Any],
    until: Callable[[asyncio.Event, AsyncIterator[bytes]], AsyncIterator[bytes]],
) -> None:
    """Add the console's routes to ``app``."""
    sessions = Sessions(token)
    env = Environment(
        loader=PackageLoader("livemig.server.web", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["to_yaml"] = lambda o: yaml.safe_dump(o, sort_keys=False)
    env.filters["age"] = lambda stamp: age(stamp, clock.wall())
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="static")

    def render(template: str, **context: Any) -> str:
        return env.get_template(template).render(**context)

    def page(
        template: str, session: Session, active: str, title: str, **context: Any
    ) -> HTMLResponse:
        html = render(template, csrf=session.csrf, active=active, title=title, **context)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE), clock.wall())

    async def posted(request: Request) -> tuple[Session, dict[str, list[str]]]:
        """The session and form of a POST whose CSRF token is right; PermissionError else."""
        session = session_of(request)
        if session is None:
            raise PermissionError("not logged in (or the session ended): log in again")
        form = await request.form()
        data: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            data.setdefault(key, []).append(str(value))
        given = request.headers.get(CSRF_HEADER) or _one(data, CSRF_FIELD) or None
        if not Sessions.csrf_ok(session, given):
            raise PermissionError("the form's CSRF token is missing or wrong: reload the page")
        return session, data

    @app.exception_handler(PermissionError)
    async def refused(request: Request, exc: PermissionError) -> Response:
        return HTMLResponse(
            f'<p class="error" role="alert">{env.filters["escape"](str(exc))}</p>', 403
        )

    def login_redirect() -> RedirectResponse:
        return RedirectResponse("/ui/login", status_code=303)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    @app.get("/ui/login", include_in_schema=False)
    async def login_form() -> HTMLResponse:
        return HTMLResponse(render("login.html", error=None))

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        if not sessions.token_ok(str(form.get("token") or "")):
            return HTMLResponse(
                render("login.html", error="That is not this cluster's token."), 401
            )
        sid, _ = sessions.open(clock.wall())
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
        return response

    @app.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await posted(request)
        sessions.close(request.cookies.get(COOKIE))
        response = login_redirect()
        response.delete_cookie(COOKIE, path="/")
        return response

    # --- live views ------------------------------------------------------------------------

    def overview_fragment() -> tuple[str, dict[str, str] | None]:
        return render("_overview.html", view=views.overview(store, defaults)), None

    def migrations_fragment() -> tuple[str, dict[str, str] | None]:
        rows = views.migration_rows(store, clock.wall())
        row = env.get_template("_migration_row.html")
        pieces = {f"{m.namespace}/{m.name}": row.render(m=m, oob=True) for m in rows}
        html = render("_migrations.html", rows=rows, yaml_url=f"/ui/yaml/{views.VMIM}")
        return html, pieces

    fragments: dict[str, Callable[[], tuple[str, dict[str, str] | None]]] = {
        "overview": overview_fragment,
        "migrations": migrations_fragment,
    }

    @app.get("/ui/", include_in_schema=False)
    async def overview_page(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return login_redirect()
        view = await off(views.overview, store, defaults)
        return page("overview.html", session, "/ui/", "Overview", view=view)

    @app.get("/ui/stream/{name}", include_in_schema=False)
    async def stream(name: str, request: Request) -> Response:
        if session_of(request) is None:
            return Response("log in first", status_code=401)
        fragment = fragments.get(name)
        if fragment is None:
            return Response(f"no live view {name!r}", status_code=404)
        return StreamingResponse(
            until(stopping, _live(name, fragment)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    async def _live(
        name: str, fragment: Callable[[], tuple[str, dict[str, str] | None]]
    ) -> AsyncIterator[bytes]:
        """Server-sent events for one live view: the whole fragment when its set of rows
        changes, else only the rows that changed (out-of-band swaps, so a page of 200
        migrations is not rebuilt for one migration's figures)."""
        changed = asyncio.Event()

        async def pump() -> None:
            async for _ in store.watch(await off(store.revision)):
                changed.set()

        def event(kind: str, html: str) -> bytes:
            data = "".join(f"data: {line}\n" for line in html.splitlines())
            return f"event: {kind}\n{data}\n".encode()

        watcher = asyncio.create_task(pump())
        last_html: str | None = None
        last_pieces: dict[str, str] | None = None
        try:
            while True:
                html, pieces = await off(fragment)
                same_rows = (
                    pieces is not None
                    and last_pieces is not None
                    and pieces.keys() == last_pieces.keys()
                )
                if same_rows:
                    assert pieces is not None and last_pieces is not None
                    news = [v for k, v in pieces.items() if last_pieces.get(k) != v]
                    if news:
                        yield event("rows", "\n".join(news))
                elif html != last_html:
                    yield event(name, html)
                last_html, last_pieces = html, pieces
                with contextlib.suppress(TimeoutError):
                    await clock.wait_for(changed.wait(), REFRESH)
                changed.clear()
                await clock.sleep(SETTLE)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    # --- migrations and nodes -------------------------------------------------------------

    @app.get("/ui/migrations", include_in_schema=False)
    async def migrations_page(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return login_redirect()
        rows = await off(views.migration_rows, store, clock.wall())
        nodes, _ = await off(store.list, "Node", None)
        return page(
            "migrations.html",
            session,
            "/ui/migrations",
            "Migrations",
            rows=rows,
            yaml_url=f"/ui/yaml/{views.VMIM}",
            node_rows=(await off(views.overview, store, defaults)).nodes,
            vmis=await off(views.running_vmis, store),
            nodes=sorted(n["metadata"]["name"] for n in nodes),
        )

    def message(text: str, ok: bool = True, status: int = 200) -> HTMLResponse:
        cls = "ok" if ok else "error"
        return HTMLResponse(f'<span class="{cls}">{env.filters["escape"](text)}</span>', status)

    @app.post("/ui/migrations", include_in_schema=False)
    async def start_migration(request: Request) -> Response:
        _, form = await posted(request)
        namespace, _, vmi = _one(form, "vmi").partition("/")
        target = _one(form, "target").strip()
        name = f"{vmi}-migration-{clock.wall():.0f}"[:253]
        request_obj = migration_request(
            name, vmi, namespace or "default", priority="user-triggered"
        )
        if target:
            request_obj["spec"]["addedNodeSelector"] = {"kubernetes.io/hostname": target}
        try:
            obj = checked(KINDS[views.VMIM], request_obj)
            await off(one_migration_at_a_time, store, obj)
            await off(store.create, obj)
        except LivemigError as exc:
            return message(str(exc).splitlines()[0], ok=False, status=409)
        return message(f"{views.VMIM} {namespace}/{name} created")

    @app.post("/ui/migrations/{namespace}/{name}/cancel", include_in_schema=False)
    async def cancel(namespace: str, name: str, request: Request) -> Response:
        await posted(request)
        try:
            await off(cancel_migration, store, namespace, name)
        except CancelRefused as exc:
            return message(str(exc), ok=False, status=409)
        except NotFound:
            return message(f"{namespace}/{name} is gone already", ok=False, status=404)
        return message(f"{namespace}/{name} cancelled: the VM keeps running on its source")

    async def _node_change(node: str, cordon: bool, drain: bool) -> bool:
        inv = await off(views.inventory, store, defaults)
        key = drain_key(inv.cluster.settings)
        now = timestamp(datetime.fromtimestamp(clock.wall(), UTC))
        for _ in range(10):
            current = copy.deepcopy(await off(store.get, "Node", "", node))
            if not cordon_node(current, cordon, drain, key, now):
                return False
            try:
                await off(store.update, current)
                return True
            except Conflict:
                continue
        raise Conflict(f"Node/{node} keeps changing; try again")

    @app.post("/ui/nodes/{node}/drain", include_in_schema=False)
    async def drain(node: str, request: Request) -> Response:
        await posted(request)
        try:
            changed = await _node_change(node, cordon=True, drain=True)
        except LivemigError as exc:
            return message(str(exc), ok=False, status=409)
        return message(f"{node} {'is being drained' if changed else 'was being drained already'}")

    @app.post("/ui/nodes/{node}/uncordon", include_in_schema=False)
    async def uncordon(node: str, request: Request) -> Response:
        await posted(request)
        try:
            await _node_change(node, cordon=False, drain=False)
        except LivemigError as exc:
            return message(str(exc), ok=False, status=409)
        return message(f"{node} uncordoned: pending evacuations are cancelled")

    # --- YAML tabs ----------------------------------------------------------------------------

    @app.get("/ui/yaml/{kind}", include_in_schema=False)
    async def yaml_of_kind(kind: str, request: Request) -> Response:
        """Every object of a kind as the API holds it (a YAML tab, fetched when opened)."""
        if session_of(request) is None:
            return Response("log in first", status_code=401)
        if kind not in KINDS:
            return Response(f"no kind {kind!r}", status_code=404)
        items, _ = await off(store.list, kind, None)
        text = "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in items) or "(none)"
        return HTMLResponse(env.filters["escape"](text))

    @app.get("/ui/yaml/{kind}/{namespace}/{name}", include_in_schema=False)
    async def yaml_of_object(kind: str, namespace: str, name: str, request: Request) -> Response:
        if session_of(request) is None:
            return Response("log in first", status_code=401)
        if kind not in KINDS:
            return Response(f"no kind {kind!r}", status_code=404)
        ns = "" if namespace == "-" or not KINDS[kind].NAMESPACED else namespace
        try:
            obj = await off(store.get, kind, ns, name)
        except NotFound as exc:
            return Response(str(exc), status_code=404)
        return HTMLResponse(env.filters["escape"](yaml.safe_dump(obj, sort_keys=False)))

    # --- virtual machines -------------------------------------------------------------------

    @app.get("/ui/vms", include_in_schema=False)
    async def vms_page(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return login_redirect()
        rows = await off(views.vm_rows, store, defaults)
        return page("vms.html", session, "/ui/vms", "Virtual machines", rows=rows)

    @app.get("/ui/vms/{namespace}/{name}", include_in_schema=False)
    async def vm_page(namespace: str, name: str, request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return login_redirect()
        try:
            detail = await off(views.vm_detail, store, defaults, namespace, name, clock.wall())
        except NotFound as exc:
            html = render(
                "error.html",
                csrf=session.csrf,
                active="/ui/vms",
                title="Not found",
                message=str(exc),
            )
            return HTMLResponse(html, 404)
        return page("vm.html", session, "/ui/vms", f"{namespace}/{name}", d=detail)

    # --- policies -------------------------------------------------------------------------

    @app.get("/ui/policies", include_in_schema=False)
    async def policies_page(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return login_redirect()
        rows = await off(views.policy_rows, store, defaults)
        return page("policies.html", session, "/ui/policies", "MigrationPolicies", policies=rows)

    def policy_form_page(
        session: Session,
        form: dict[str, Any],
        editing: bool,
        errors: dict[str, str] | None = None,
        objects: list[dict[str, Any]] | None = None,
        preview: dict[str, Any] | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        html = render(
            "policy_form.html",
            csrf=session.csrf,
            active="/ui/policies",
            title="MigrationPolicy",
            form=form,
            editing=editing,
            errors=errors or {},
            objects=objects or [],
            preview=preview,
            preview_error=None,
            action=f"/ui/policies/{form['name']}" if editing else "/ui/policies",
        )
        return HTMLResponse(html, status)

    @app.get("/ui/policies/new", include_in_schema=False)
    async def new_policy(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return login_redirect()
        blank = _form_state({"spec": {}})
        return policy_form_page(session, blank, editing=False)

    @app.get("/ui/policies/{name}", include_in_schema=False)
    async def edit_policy(name: str, request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return login_redirect()
        current = await off(store.get, "MigrationPolicy", "", name)
        return policy_form_page(session, _form_state(current), editing=True, objects=[current])

    async def save_policy(request: Request, name: str | None) -> Response:
        session, form = await posted(request)
        obj, errors = policy_from_form(form, name)
        state = _form_echo(form)
        if name is not None:
            state["name"] = name
        if not errors:
            try:
                good = checked(KINDS["MigrationPolicy"], copy.deepcopy(obj))
                if name is None:
                    await off(store.create, good)
                else:
                    current = await off(store.get, "MigrationPolicy", "", name)
                    current["spec"] = good["spec"]
                    await off(store.update, checked(KINDS["MigrationPolicy"], current))
            except LoadError as exc:
                errors = _field_errors(exc)
            except LivemigError as exc:
                errors = {"": str(exc)}
        if errors:
            return policy_form_page(
                session, state, editing=name is not None, errors=errors, status=422
            )
        return RedirectResponse("/ui/policies", status_code=303)

    @app.post("/ui/policies", include_in_schema=False)
    async def create_policy(request: Request) -> Response:
        return await save_policy(request, None)

    @app.post("/ui/policies/preview", include_in_schema=False)
    async def preview_policy(request: Request) -> Response:
        _, form = await posted(request)
        obj, _ = policy_from_form(form)
        if not obj["metadata"]["name"]:
            obj["metadata"]["name"] = "new-policy"
        try:
            policy = validate(obj)
        except LivemigError as exc:
            text = render(
                "_policy_preview.html",
                preview=None,
                preview_error=f"Not valid yet: {str(exc).splitlines()[-1].strip()}",
            )
            return HTMLResponse(text)
        applies, takes = await off(views.policy_preview, store, defaults, policy)
        return HTMLResponse(
            render(
                "_policy_preview.html",
                preview={"applies": applies, "takes": takes},
                preview_error=None,
            )
        )

    @app.post("/ui/policies/{name}", include_in_schema=False)
    async def update_policy(name: str, request: Request) -> Response:
        return await save_policy(request, name)

    @app.post("/ui/policies/{name}/delete", include_in_schema=False)
    async def delete_policy(name: str, request: Request) -> Response:
        await posted(request)
        with contextlib.suppress(NotFound):
            await off(store.delete, "MigrationPolicy", "", name)
        return RedirectResponse("/ui/policies", status_code=303)

    # --- live migration settings -------------------------------------------------------------

    async def settings_object() -> tuple[dict[str, Any], list[str]]:
        """The object holding the cluster's settings (the HyperConverged, else the KubeVirt,
        else a new HyperConverged), and the path to its settings map."""
        hcos, _ = await off(store.list, "HyperConverged", None)
        if hcos:
            hco = hcos[0]
            if str(hco.get("apiVersion", "")).endswith("/v1"):
                return hco, ["spec", "virtualization", "liveMigrationConfig"]
            return hco, ["spec", "liveMigrationConfig"]
        kvs, _ = await off(store.list, "KubeVirt", None)
        if kvs:
            return kvs[0], ["spec", "configuration", "migrations"]
        return {
            "apiVersion": "hco.kubevirt.io/v1beta1",
            "kind": "HyperConverged",
            "metadata": {"name": HCO_NAME, "namespace": HCO_NAMESPACE},
            "spec": {},
        }, ["spec", "liveMigrationConfig"]

    def settings_map(obj: dict[str, Any], path: list[str]) -> dict[str, Any]:
        here = obj
        for key in path:
            here = here.setdefault(key, {})
        return here

    def apply_settings(
        obj: dict[str, Any], path: list[str], form: dict[str, list[str]]
    ) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        settings = settings_map(out, path)
        reset = set(form.get("reset", []))
        for f in SETTING_FIELDS:
            value = _one(form, f.name).strip()
            if f.name in reset or not value:
                settings.pop(f.name, None)  # the document: removing a key restores its default
            else:
                settings[f.name] = _typed(value, f.integer, f.boolean)
        return out

    def field_rows(obj: dict[str, Any], path: list[str]) -> list[dict[str, Any]]:
        defaults_now = effective_configuration(ClusterConfig(defaults=defaults)).as_dict()
        current = settings_map(copy.deepcopy(obj), path)
        rows = []
        for f in SETTING_FIELDS:
            value = current.get(f.name)
            shown = (
                ""
                if value is None
                else ("true" if value is True else "false" if value is False else str(value))
            )
            default = defaults_now.get(f.name)
            rows.append({**asdict(f), "value": shown, "default": _default_words(f.name, default)})
        return rows

    async def settings_page_response(
        session: Session,
        obj: dict[str, Any],
        path: list[str],
        errors: dict[str, str] | None = None,
        saved: bool = False,
        status: int = 200,
    ) -> HTMLResponse:
        findings = await off(advice, obj)
        meta = obj["metadata"]
        html = render(
            "settings.html",
            csrf=session.csrf,
            active="/ui/settings",
            title="Live migration settings",
            fields=field_rows(obj, path),
            errors=errors or {},
            saved=saved,
            findings=findings,
            advice_error=None,
            source=f"{obj['kind']}/{meta.get('namespace')}/{meta['name']}",
            yaml_url=(
                f"/ui/yaml/{obj['kind']}/{meta.get('namespace') or '-'}/{meta['name']}"
                if meta.get("resourceVersion")
                else None
            ),
        )
        return HTMLResponse(html, status)

    def advice(obj: dict[str, Any]) -> list[Any]:
        """lint's advice for the cluster as it would be with ``obj`` holding its settings."""
        try:
            settings_obj = validate(copy.deepcopy(obj))
        except LivemigError:
            return []
        inv = views.inventory(store, defaults)
        full = Inventory.from_objects(
            [settings_obj, *inv.policies, *inv.namespaces.values(), *views.typed_vmis(store)],
            defaults,
        )
        return [f for f in lint(full) if f.severity is not Severity.INFO][:20]

    @app.get("/ui/settings", include_in_schema=False)
    async def settings_page(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return login_redirect()
        obj, path = await settings_object()
        return await settings_page_response(
            session, obj, path, saved=request.query_params.get("saved") == "1"
        )

    @app.post("/ui/settings/advice", include_in_schema=False)
    async def settings_advice(request: Request) -> Response:
        _, form = await posted(request)
        obj, path = await settings_object()
        changed = apply_settings(obj, path, form)
        try:
            validate(copy.deepcopy(changed))
        except LoadError as exc:
            return HTMLResponse(
                render(
                    "_advice.html",
                    findings=[],
                    advice_error="; ".join(p.message for p in exc.problems),
                )
            )
        return HTMLResponse(
            render("_advice.html", findings=await off(advice, changed), advice_error=None)
        )

    @app.post("/ui/settings", include_in_schema=False)
    async def save_settings(request: Request) -> Response:
        session, form = await posted(request)
        obj, path = await settings_object()
        changed = apply_settings(obj, path, form)
        prefix = ".".join(path) + "."
        try:
            good = checked(KINDS[changed["kind"]], copy.deepcopy(changed))
            if changed["metadata"].get("resourceVersion"):
                await off(store.update, good)
            else:
                await off(store.create, good)
        except LoadError as exc:
            return await settings_page_response(
                session, changed, path, errors=_field_errors(exc, prefix), status=422
            )
        except LivemigError as exc:
            return await settings_page_response(
                session, changed, path, errors={"": str(exc)}, status=409
            )
        return RedirectResponse("/ui/settings?saved=1", status_code=303)


def _default_words(name: str, value: Any) -> str:
    if name == "bandwidthPerMigration":
        return "0 (no limit)" if not value else str(value)
    if name == "network":
        return value or "(primary network)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
