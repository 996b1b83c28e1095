"""The web console in headless Chromium against a real `livemig up` cluster with QEMU test
guests: log in, create a policy and see it applied, watch a migration's progress, field errors,
the settings form steering the next drain, and requests without session or CSRF refused."""

from __future__ import annotations

from typing import Any

import httpx

from livemig.api.builders import make_test_guest_vm
from tests.e2e.test_cluster import intervals, max_overlap

from .conftest import Cluster, requires_browser, wait

pytestmark = requires_browser


def running(cluster: Cluster, names: list[str]) -> bool:
    items = cluster.get("VirtualMachineInstance")["items"]
    phases = {v["metadata"]["name"]: (v.get("status") or {}).get("phase") for v in items}
    return all(phases.get(n) == "Running" for n in names)


def start_vms(cluster: Cluster, vms: list[dict[str, Any]]) -> None:
    for vm in vms:
        cluster.create(vm)
    wait("VMs running", lambda: running(cluster, [v["metadata"]["name"] for v in vms]), 90)


def test_logging_in_takes_the_token_once_and_a_wrong_one_is_refused(
    browser: Any, cluster: Cluster
) -> None:
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(cluster.url + "/ui/migrations")
    assert pg.url.endswith("/ui/login")  # no session: to the login form
    pg.fill("#token", "not-the-token")
    pg.click("button[type=submit]")
    assert "not this cluster's token" in pg.inner_text("[role=alert]")
    pg.fill("#token", cluster.token)
    pg.click("button[type=submit]")
    pg.wait_for_url("**/ui/")
    assert pg.locator("tr[data-node]").count() == 3
    cookie = next(c for c in context.cookies() if c["name"] == "livemig_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    context.close()


def test_requests_without_the_session_or_the_csrf_token_are_refused(
    page: Any, cluster: Cluster
) -> None:
    form = {"name": "sneaky", "vm_key": "a", "vm_value": "b"}
    with httpx.Client(base_url=cluster.url, follow_redirects=False) as anonymous:
        no_session = anonymous.post("/ui/policies", data=form)
        login_page = anonymous.get("/ui/policies")
    session = next(c for c in page.context.cookies() if c["name"] == "livemig_session")
    with httpx.Client(
        base_url=cluster.url, cookies={"livemig_session": session["value"]}
    ) as logged_in:
        no_csrf = logged_in.post("/ui/policies", data=form)
        wrong_csrf = logged_in.post("/ui/policies", data={**form, "csrf": "guess"})
        drain = logged_in.post("/ui/nodes/node-1/drain", headers={"X-CSRF-Token": "guess"})
    assert no_session.status_code == 403
    assert login_page.status_code == 303 and login_page.headers["location"] == "/ui/login"
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    assert wrong_csrf.status_code == 403
    assert drain.status_code == 403
    names = [p["metadata"]["name"] for p in cluster.get("MigrationPolicy")["items"]]
    assert "sneaky" not in names
    assert not cluster.get("Node", "node-1")["spec"].get("unschedulable")


def test_a_bad_quantity_shows_a_field_error_and_nothing_is_stored(
    page: Any, cluster: Cluster
) -> None:
    page.goto(cluster.url + "/ui/policies/new")
    page.fill("#name", "broken")
    page.fill("input[aria-label='VM label key 1']", "tier")
    page.fill("input[aria-label='VM label value 1']", "web")
    page.fill("#bandwidth", "fast")
    page.click("button[type=submit]")
    error = page.locator("[data-error='spec.bandwidthPerMigration']")
    assert "is not a quantity" in error.inner_text()
    assert page.input_value("#bandwidth") == "fast"  # what was typed stays, to be fixed
    names = [p["metadata"]["name"] for p in cluster.get("MigrationPolicy")["items"]]
    assert "broken" not in names


def test_a_policy_made_in_the_form_applies_to_the_next_migration_whose_progress_is_shown(
    page: Any, cluster: Cluster
) -> None:
    start_vms(cluster, [make_test_guest_vm("shop-1", labels={"tier": "shop"}, working_set="64Mi")])
    page.goto(cluster.url + "/ui/policies/new")
    page.fill("#name", "shop-slow")
    page.fill("input[aria-label='VM label key 1']", "tier")
    page.fill("input[aria-label='VM label value 1']", "shop")
    page.fill("#bandwidth", "12")
    page.select_option("select[name=bandwidth_unit]", "Mi")
    page.wait_for_selector("#preview :text('default/shop-1')")  # it says whom it would take
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/policies")
    assert page.locator("tr[data-policy='shop-slow']").inner_text().count("1 VMI") == 1

    page.goto(cluster.url + "/ui/migrations")
    page.select_option("#vmi", "default/shop-1")
    page.click("form.row button[type=submit]")
    page.locator("#message span.ok").wait_for()
    assert "created" in page.inner_text("#message")
    row = page.locator("tr[data-migration^='default/shop-1-migration']")
    seen: set[int] = set()

    def done() -> bool:
        if row.count() == 0:
            return False
        # One read of both: a live update may replace the row between two reads.
        percent, phase = row.evaluate("r => [r.dataset.percent, r.dataset.phase]")
        seen.add(int(percent or 0))
        return bool(phase == "Succeeded")

    wait("the migration to succeed on the page", done, 90, every=0.1)
    assert row.get_attribute("data-policy") == "shop-slow"
    assert row.locator("td.policy").inner_text() == "shop-slow"
    assert any(0 < p < 100 for p in seen), seen  # the bar moved while it ran
    assert max(seen) == 100

    # The VM's page explains the choice and shows where each setting comes from.
    page.goto(cluster.url + "/ui/vms/default/shop-1")
    assert "MigrationPolicy/shop-slow" in page.inner_text("[data-test=winner]")
    bandwidth = page.inner_text("tr[data-setting='bandwidthPerMigration']")
    assert "12Mi/s" in bandwidth and "MigrationPolicy/shop-slow" in bandwidth
    assert page.locator("tr[data-phase='Succeeded']").count() == 1


def test_the_settings_form_steers_the_next_drain(page: Any, cluster: Cluster) -> None:
    names = [f"pod-{i}" for i in range(3)]
    start_vms(cluster, [make_test_guest_vm(n, working_set="48Mi") for n in names])
    node = cluster.get("VirtualMachineInstance", names[0])["status"]["nodeName"]

    page.goto(cluster.url + "/ui/settings")
    page.fill("#parallelOutboundMigrationsPerNode", "1")
    page.fill("#bandwidthPerMigration", "32Mi")
    page.click("button[type=submit]")
    assert "Saved." in page.inner_text("[role=status]")
    hco = cluster.get("HyperConverged")["items"][0]
    assert hco["spec"]["liveMigrationConfig"]["parallelOutboundMigrationsPerNode"] == 1

    page.goto(cluster.url + "/ui/")
    page.click(f"tr[data-node='{node}'] button:text('Drain')")
    page.locator("#message span.ok").wait_for()
    assert "is being drained" in page.inner_text("#message")

    def drained() -> bool:
        n = cluster.get("Node", node)
        return bool(((n.get("status") or {}).get("drain") or {}).get("completionTimestamp"))

    wait(f"{node} drained", drained, 120)
    # The overview was not reloaded: the live stream brought the drain's end to it.
    page.locator(f"tr[data-node='{node}']", has_text="drained").wait_for(timeout=10_000)
    assert "SchedulingDisabled" in page.inner_text(f"tr[data-node='{node}']")
    migrations = [
        m
        for m in cluster.get("VirtualMachineInstanceMigration")["items"]
        if (m["metadata"].get("annotations") or {}).get("kubevirt.io/evacuationMigration") == node
    ]
    assert len(migrations) >= 2
    assert all(m["status"]["phase"] == "Succeeded" for m in migrations)
    assert max_overlap([intervals(m) for m in migrations]) == 1  # one at a time: the form's value

    # Reset to default removes the key (the document: removing a key restores the default).
    page.goto(cluster.url + "/ui/settings")
    page.check("input[aria-label='reset parallelOutboundMigrationsPerNode to its default']")
    page.click("button[type=submit]")
    hco = cluster.get("HyperConverged")["items"][0]
    assert "parallelOutboundMigrationsPerNode" not in hco["spec"]["liveMigrationConfig"]
    page.goto(cluster.url + "/ui/")
    page.click(f"tr[data-node='{node}'] button:text('Uncordon')")
    wait("uncordoned", lambda: not cluster.get("Node", node)["spec"].get("unschedulable"), 10)
