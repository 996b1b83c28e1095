"""The console's forms and actions over real HTTP (a real server and SQLite file on 127.0.0.1;
no controller or agents run, so the objects stay as the test writes them)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from livemig.api.builders import hyperconverged, migration_request
from livemig.api.lifecycle import MigrationStatus
from livemig.api.transfer import MigrationMode
from livemig.server.run import start_server
from livemig.store.sqlite import SQLiteStore

TOKEN = "console-test-token"


@asynccontextmanager
async def console(folder: Path) -> AsyncIterator[tuple[httpx.AsyncClient, SQLiteStore, str]]:
    store = SQLiteStore(folder / "livemig.db")
    server = await start_server(store, TOKEN)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            r = await http.post("/ui/login", data={"token": TOKEN})
            assert r.status_code == 303
            page = await http.get("/ui/policies/new")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            yield http, store, csrf.group(1)
    finally:
        await server.stop()
        store.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_cancel_in_post_copy_is_refused_with_the_reason_shown(tmp_path: Path) -> None:
    async def go() -> httpx.Response:
        async with console(tmp_path) as (http, store, csrf):
            created = store.create(migration_request("m", "vm", "default"))
            now = datetime.now(UTC)
            st = (
                MigrationStatus()
                .admit("node-1", now)
                .schedule("node-1", "node-2", 2**27, None, {}, now)
                .preparing(now)
                .target_ready("tcp:198.18.0.1:1", now)
                .start(now)
                .switch_mode(MigrationMode.POST_COPY)
            )
            created["status"] = st.to_status()
            store.update(created, "status")
            answer = await http.post(
                "/ui/migrations/default/m/cancel", headers={"X-CSRF-Token": csrf}
            )
            assert store.get("VirtualMachineInstanceMigration", "default", "m")  # still there
            return answer

    answer = run(go())
    assert answer.status_code == 409
    assert "post-copy and cannot be cancelled" in answer.text


def test_policy_forms_edit_delete_and_refuse_a_value_without_a_key(tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with console(tmp_path) as (http, store, csrf):
            form = {
                "csrf": csrf,
                "name": "db",
                "vm_key": ["tier", ""],
                "vm_value": ["db", "orphan"],
                "bandwidth": "64",
                "bandwidth_unit": "Mi",
            }
            seen["orphan"] = await http.post("/ui/policies", data=form)
            seen["stored_after_orphan"] = store.list("MigrationPolicy", None)[0]
            form["vm_value"] = ["db", ""]
            seen["created"] = await http.post("/ui/policies", data=form)
            seen["edit_page"] = await http.get("/ui/policies/db")
            form["bandwidth"] = "1"
            form["bandwidth_unit"] = "Gi"
            form["allowPostCopy"] = "true"
            seen["updated"] = await http.post("/ui/policies/db", data=form)
            seen["spec"] = store.get("MigrationPolicy", "", "db")["spec"]
            seen["yaml"] = await http.get("/ui/yaml/MigrationPolicy/-/db")
            seen["deleted"] = await http.post("/ui/policies/db/delete", data={"csrf": csrf})
            seen["left"] = store.list("MigrationPolicy", None)[0]
        return seen

    seen = run(go())
    assert seen["orphan"].status_code == 422
    assert "needs a label key" in seen["orphan"].text
    assert seen["stored_after_orphan"] == []
    assert seen["created"].status_code == 303
    assert 'value="64"' in seen["edit_page"].text  # the form shows what is stored
    assert seen["updated"].status_code == 303
    assert seen["spec"]["bandwidthPerMigration"] == "1Gi"
    assert seen["spec"]["allowPostCopy"] is True
    assert "bandwidthPerMigration: 1Gi" in seen["yaml"].text
    assert seen["deleted"].status_code == 303 and seen["left"] == []


def test_the_settings_form_shows_lint_advice_and_resets_a_key_to_its_default(
    tmp_path: Path,
) -> None:
    async def go() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with console(tmp_path) as (http, store, csrf):
            store.create(hyperconverged(parallelMigrationsPerCluster=3, progressTimeout=150))
            form = {
                "csrf": csrf,
                "bandwidthPerMigration": "1Mi",
                "completionTimeoutPerGiB": "1",
                "parallelMigrationsPerCluster": "3",
                "parallelOutboundMigrationsPerNode": "",
                "progressTimeout": "0",
                "allowPostCopy": "",
                "network": "migration-network",
                "reset": ["parallelMigrationsPerCluster"],
            }
            seen["advice"] = await http.post("/ui/settings/advice", data=form)
            seen["saved"] = await http.post("/ui/settings", data=form)
            seen["config"] = store.list("HyperConverged", None)[0][0]["spec"]["liveMigrationConfig"]
            seen["bad"] = await http.post(
                "/ui/settings", data={**form, "parallelMigrationsPerCluster": "many", "reset": []}
            )
            seen["after_bad"] = store.list("HyperConverged", None)[0][0]["spec"][
                "liveMigrationConfig"
            ]
        return seen

    seen = run(go())
    assert 'data-code="LM104"' in seen["advice"].text  # progressTimeout 0: never cancelled
    assert seen["saved"].status_code == 303
    assert "parallelMigrationsPerCluster" not in seen["config"]  # reset: back to the default
    assert seen["config"]["completionTimeoutPerGiB"] == 1
    assert seen["config"]["network"] == "migration-network"
    assert seen["bad"].status_code == 422
    assert 'data-error="parallelMigrationsPerCluster"' in seen["bad"].text
    assert seen["after_bad"] == seen["config"]  # nothing half-applied


def test_pages_without_a_session_go_to_the_login_and_streams_refuse(tmp_path: Path) -> None:
    async def go() -> list[int]:
        store = SQLiteStore(tmp_path / "livemig.db")
        server = await start_server(store, TOKEN)
        try:
            async with httpx.AsyncClient(base_url=server.url) as http:
                return [
                    (await http.get(p)).status_code
                    for p in ("/ui/", "/ui/vms", "/ui/stream/migrations", "/ui/yaml/Node")
                ] + [(await http.get("/apis/Node")).status_code]
        finally:
            await server.stop()
            store.close()

    assert run(go()) == [303, 303, 401, 401, 401]
