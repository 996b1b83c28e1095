"""The migration controller: VMs to VMIs, VMI placement, migration admission and phases, node
health, and garbage collection. Level-triggered: every pass re-derives what to do from the
objects in the API server, so a restart mid-migration picks up exactly where things stand.

Each object's work is isolated (:mod:`livemig.perobject`): one that fails gets a condition and an
event and is retried with backoff, and the pass goes on with the others."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx

from livemig.api.builders import PRIORITY_ANNOTATION
from livemig.api.lifecycle import MigrationObject, MigrationStatus, Phase, transition
from livemig.api.loading import validate
from livemig.api.models import EventType, Resource, VirtualMachine, VirtualMachineInstance
from livemig.api.status import (
    condition,
    condition_changed,
    epoch_seconds,
    last_heartbeat,
    node_ready,
)
from livemig.api.vmi_status import VMIPhase, VMIStatus, vmi_scheduled
from livemig.client import ApiClient
from livemig.clock import Clock
from livemig.clusterview import drain_key, memory_used, node_view
from livemig.controller.draining import Drains
from livemig.errors import AlreadyExists, Conflict, InvalidInput, LivemigError, NotFound
from livemig.evacuation import BACKOFF as EVACUATION_BACKOFF
from livemig.events import EventRecorder
from livemig.informer import LIFECYCLE, Informer, key_of, reconcile_forever
from livemig.inventory import Inventory
from livemig.perobject import PerObject
from livemig.policy import (
    DefaultsProfile,
    MigrationConfiguration,
    Precedence,
    effective_configuration,
)
from livemig.scheduling import (
    MigrationView,
    NodeView,
    admit,
    choose_node,
    handover_pending,
    priority_rank,
    silent_nodes,
    target_selector,
)

log = logging.getLogger(__name__)

VMIM = "VirtualMachineInstanceMigration"
VMI = "VirtualMachineInstance"
WATCHED = (
    VMIM,
    VMI,
    "VirtualMachine",
    "Node",
    "HyperConverged",
    "KubeVirt",
    "MigrationPolicy",
    "Namespace",
    "VirtualMachineInstancetype",
    "VirtualMachineClusterInstancetype",
)
#: Seconds a node may go unheard (while others report) before it is NotReady: Kubernetes'
#: node-monitor-grace-period, long enough for the disk stalls seen on busy virtual machines.
HEARTBEAT_TIMEOUT = 40.0
#: How many finished migrations are kept per VMI.
KEEP_FINISHED = 5
#: Events are deleted this long after they last happened (Kubernetes' --event-ttl default).
EVENT_TTL = 3600.0
#: How often old events are looked for.
EVENT_GC_EVERY = 60.0


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = obj.setdefault("status", {})
    return status


def _reserve(nodes: list[NodeView], name: str, memory: int) -> None:
    """Count ``memory`` as used on node ``name`` for the rest of this pass."""
    nodes[:] = [
        replace(n, memory_used=n.memory_used + memory) if n.name == name else n for n in nodes
    ]


class Controller:
    def __init__(
        self,
        client: ApiClient,
        clock: Clock,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        precedence: Precedence = Precedence.DOCUMENTED,
        backoff: tuple[float, float] = (1.0, 300.0),
        defaults: DefaultsProfile = DefaultsProfile.DOCUMENT,
        evacuation_backoff: tuple[float, float] = EVACUATION_BACKOFF,
    ) -> None:
        self.client = client
        self.clock = clock
        self.defaults = defaults  # whose defaults fill unset settings (livemig up --defaults)
        self.heartbeat_timeout = heartbeat_timeout
        self.precedence = precedence
        self.informer = Informer(client, WATCHED, clock)
        self.events = EventRecorder(client, "livemig-controller", clock)
        self.each = PerObject(self.informer, self.events, clock, *backoff)
        self.drains = Drains(
            client, self.informer, self.events, self.each, clock, evacuation_backoff
        )
        # node → (its last heartbeat as written, when this controller saw it change)
        self._heard: dict[str, tuple[str | None, float]] = {}
        self._events_expired_at: float | None = None

    async def run(self) -> None:
        try:
            await reconcile_forever(
                self.informer,
                self.reconcile,
                self.clock,
                on_ready=lambda: LIFECYCLE.info(
                    "livemig controller: up, watching %s", self.client.url
                ),
            )
        finally:
            await self.events.close()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall(), UTC)

    async def reconcile(self) -> None:
        # From the watch cache: a freed slot reaches the next pending migration without a
        # round of lists. Every step below isolates its objects: one failing object is that
        # object's condition and event, never the end of the pass.
        objs = {kind: self.informer.objects(kind) for kind in WATCHED}
        await self._vms_to_vmis(objs["VirtualMachine"], objs[VMI])
        await self._collect_orphans(objs["VirtualMachine"], objs[VMI])
        nodes = await self._node_health(objs["Node"], objs[VMIM], objs[VMI])
        await self._place_vmis(objs[VMI], nodes)
        cluster = (await self._inventory(objs)).cluster
        limits = effective_configuration(cluster)
        await self.drains.reconcile(
            objs, nodes, drain_key(cluster.settings), cluster.eviction_strategy, limits.network
        )
        await self._migrations(objs, nodes, limits)
        await self._collect_garbage(objs[VMIM])
        await self._expire_events()

    async def _valid(self, kind: str, raw: dict[str, Any]) -> Resource | None:
        """The typed object, or None (reported on the object) if it does not validate."""
        found: list[Resource] = []

        async def check() -> None:
            found.append(validate(raw))

        await self.each.run(kind, raw, "InvalidObject", check)
        return found[0] if found else None

    async def _status_written(
        self, kind: str, raw: dict[str, Any], change: Callable[[dict[str, Any]], Any]
    ) -> bool:
        """Write a status change; True if it changed anything (so an event is news)."""
        ns, name = key_of(raw)
        before = raw["metadata"].get("resourceVersion")
        out = await self._modify(kind, name, ns or None, change)
        return out is not None and out["metadata"].get("resourceVersion") != before

    # --- VMs and VMIs ----------------------------------------------------------------------

    async def _vms_to_vmis(self, vms: list[dict[str, Any]], vmis: list[dict[str, Any]]) -> None:
        have = {key_of(v): v for v in vmis}
        for raw in vms:
            await self.each.run(
                "VirtualMachine", raw, "FailedCreate", partial(self._vm_to_vmi, raw, have)
            )

    async def _vm_to_vmi(
        self, raw: dict[str, Any], have: dict[tuple[str, str], dict[str, Any]]
    ) -> None:
        vm = validate(raw)
        assert isinstance(vm, VirtualMachine)
        strategy = vm.spec.run_strategy
        running = vm.spec.running
        want = running is True or (
            strategy is not None and strategy.value in ("Always", "RerunOnFailure")
        )
        stop = running is False or (strategy is not None and strategy.value == "Halted")
        existing = have.get(key_of(raw))
        template = raw["spec"]["template"]
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        annotations = dict((template.get("metadata") or {}).get("annotations") or {})
        if want and existing is None:
            vmi_spec = self._with_instancetype(vm, template.get("spec") or {})
            await self._create_ignoring_exists(
                {
                    "apiVersion": "kubevirt.io/v1",
                    "kind": VMI,
                    "metadata": {
                        "name": vm.name,
                        "namespace": vm.namespace,
                        "labels": labels,
                        "annotations": annotations,
                        "ownerReferences": [
                            {
                                "apiVersion": "kubevirt.io/v1",
                                "kind": "VirtualMachine",
                                "name": vm.name,
                                "uid": raw["metadata"].get("uid"),
                                "controller": True,
                            }
                        ],
                    },
                    "spec": vmi_spec,
                }
            )
        elif want and existing is not None:
            meta = existing["metadata"]
            if meta.get("labels", {}) != labels or meta.get("annotations", {}) != annotations:
                # Template label changes reach the running VMI without a restart.
                def relabel(o: dict[str, Any]) -> dict[str, Any]:
                    o["metadata"]["labels"] = labels
                    o["metadata"]["annotations"] = annotations
                    return o

                await self._modify(VMI, vm.name, vm.namespace, relabel, status=False)
        elif stop and existing is not None:
            await self._delete_ignoring_missing(VMI, vm.name, vm.namespace)
        if (
            existing is not None
            and VMIStatus.of(existing).phase is VMIPhase.FAILED
            and strategy is not None
            and strategy.value in ("Always", "RerunOnFailure")
        ):
            # KubeVirt restarts a failed VMI of such a VM: a new one is created next pass.
            await self._delete_ignoring_missing(VMI, vm.name, vm.namespace)
            await self.events.record(
                raw,
                EventType.NORMAL,
                "Restarting",
                f"its VMI failed ({VMIStatus.of(existing).reason or 'no reason given'}); "
                f"runStrategy {strategy.value} starts it again",
            )

    def _with_instancetype(self, vm: VirtualMachine, spec: dict[str, Any]) -> dict[str, Any]:
        """The VMI spec with its instancetype's memory expanded in, as KubeVirt does when it
        starts a VM that names one; LivemigError (the VM's FailedCreate) if it is missing."""
        matcher = vm.spec.instancetype
        if matcher is None or vm.spec.template.spec.memory_bytes() is not None:
            return spec
        namespace = vm.namespace or "default"
        found = self.informer.get(
            matcher.kind, matcher.name, matcher.namespace_for(namespace) or None
        )
        if found is None:
            raise InvalidInput(
                f"instancetype {matcher.describe(namespace)} does not exist: create it, or give "
                "the VM spec.template.spec.domain.memory.guest"
            )
        memory = ((found.get("spec") or {}).get("memory") or {}).get("guest")
        out = copy.deepcopy(spec)
        out.setdefault("domain", {}).setdefault("memory", {})["guest"] = memory
        return out

    async def _collect_orphans(self, vms: list[dict[str, Any]], vmis: list[dict[str, Any]]) -> None:
        """Delete VMIs whose owning VirtualMachine is gone (ownerReferences, as Kubernetes'
        garbage collector does): deleting a VM deletes its VMI."""
        owners = {(key_of(v), v["metadata"].get("uid")) for v in vms}
        names = {key_of(v) for v in vms}
        for raw in vmis:
            ns, name = key_of(raw)
            for ref in raw["metadata"].get("ownerReferences") or []:
                if ref.get("kind") != "VirtualMachine" or not ref.get("controller"):
                    continue
                owner = (ns, str(ref.get("name")))
                gone = owner not in names or (
                    ref.get("uid") is not None and (owner, ref.get("uid")) not in owners
                )
                if gone:
                    await self._delete_ignoring_missing(VMI, name, ns)
                    await self.events.record(
                        raw,
                        EventType.NORMAL,
                        "SuccessfulDelete",
                        f"deleted: its VirtualMachine {ns}/{ref.get('name')} is gone",
                    )
                    self.each.forget(VMI, raw)

    async def _place_vmis(self, vmis: list[dict[str, Any]], nodes: list[NodeView]) -> None:
        for raw in vmis:
            if VMIStatus.of(raw).placed:
                continue
            await self.each.run(VMI, raw, "PlacementFailed", partial(self._place, raw, nodes))

    async def _place(self, raw: dict[str, Any], nodes: list[NodeView]) -> None:
        vmi = validate(raw)
        assert isinstance(vmi, VirtualMachineInstance)
        memory = vmi.spec.memory_bytes() or 0
        best, why = choose_node(nodes, memory, vmi.spec.node_selector)

        def place(o: dict[str, Any]) -> dict[str, Any] | None:
            if VMIStatus.of(o).placed:
                return None
            if best is None:
                changed = condition_changed(_status(o), "Scheduled", "False", "Unschedulable", why)
                return o if changed else None
            return vmi_scheduled(o, best.name, why)

        changed = await self._status_written(VMI, raw, place)
        if best is not None:  # account for it before placing the next one
            _reserve(nodes, best.name, memory)
        elif changed:
            await self.events.record(raw, EventType.WARNING, "Unschedulable", why)

    # --- nodes -----------------------------------------------------------------------------

    async def _node_health(
        self,
        nodes: list[dict[str, Any]],
        migrations: list[dict[str, Any]],
        vmis: list[dict[str, Any]],
    ) -> list[NodeView]:
        """Mark silent nodes NotReady and fail their migrations; return the scheduling view."""
        used = memory_used(vmis, migrations)
        silent = self._silent(nodes)
        views: list[NodeView] = []
        for raw in nodes:
            await self.each.run(
                "Node",
                raw,
                "NodeHealthFailed",
                partial(self._one_node, raw, migrations, used, views, silent),
            )
        return views

    def _silent(self, nodes: list[dict[str, Any]]) -> dict[str, float]:
        """Ready nodes silent for longer than the heartbeat timeout, and for how long, judged
        by when this controller saw each heartbeat change (not by the agents' clocks, and not
        fooled by a store that delivered late: see decisions.silent_nodes)."""
        now = self.clock.now()
        names = set()
        for raw in nodes:
            name = raw["metadata"]["name"]
            names.add(name)
            beat = last_heartbeat(raw)
            seen = self._heard.get(name)
            if seen is None or seen[0] != beat:
                self._heard[name] = (beat, now)
        for gone in set(self._heard) - names:
            del self._heard[gone]
        ready = {n["metadata"]["name"] for n in nodes if node_ready(n)}
        heard = {n: t for n, (_, t) in self._heard.items() if n in ready}
        silent = silent_nodes(heard, now, self.heartbeat_timeout)
        if len(heard) > 1 and now - max(heard.values()) > self.heartbeat_timeout:
            log.warning(
                "livemig controller: no node has reported for %.0f s; that looks like a stalled "
                "API server or store, not dead nodes: failing nothing",
                now - max(heard.values()),
            )
        return silent

    async def _one_node(
        self,
        raw: dict[str, Any],
        migrations: list[dict[str, Any]],
        used: dict[str, int],
        views: list[NodeView],
        silent: dict[str, float],
    ) -> None:
        name = raw["metadata"]["name"]
        ready = node_ready(raw)
        if ready and name in silent:
            ready = False
            message = f"no heartbeat for {silent[name]:.0f} s"

            def not_ready(o: dict[str, Any]) -> dict[str, Any]:
                condition(
                    _status(o),
                    "Ready",
                    "False",
                    "NodeStatusUnknown",
                    f"node stopped reporting: {message}",
                )
                return o

            await self._modify("Node", name, None, not_ready)
            await self.events.record(
                raw, EventType.WARNING, "NodeNotReady", f"node stopped reporting: {message}"
            )
            await self._fail_unstarted_migrations_on(
                name, migrations, f"node {name} stopped reporting ({message})"
            )
        views.append(node_view(raw, used, ready))

    async def _fail_unstarted_migrations_on(
        self, node: str, migrations: list[dict[str, Any]], reason: str
    ) -> None:
        """Fail the silent node's migrations that have not started moving memory, and ask the
        source to abort a Running pre-copy one to it (a VM must not move onto a node nobody
        hears from). Only the source's QEMU knows whether a Running one already completed, so
        its agent records the outcome; a silent *source* is left alone for the same reason."""
        now = self._now()
        for raw in migrations:
            st = MigrationStatus.of(raw)
            if not st.holds_slot or not st.involves(node):
                continue
            ns, name = key_of(raw)
            if st.phase is not Phase.RUNNING:
                await self._modify(
                    VMIM,
                    name,
                    ns,
                    lambda o: transition(o, lambda s: s.fail_before_transfer(reason, now)),
                )
            elif st.target_node == node:
                await self._modify(
                    VMIM, name, ns, lambda o: transition(o, lambda s: s.request_abort(reason))
                )

    def _failer(self, reason: str) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
        return lambda o: transition(o, lambda st: st.fail(reason, self._now()))

    # --- migrations ------------------------------------------------------------------------

    async def _migrations(
        self,
        objs: dict[str, list[dict[str, Any]]],
        nodes: list[NodeView],
        limits: MigrationConfiguration,
    ) -> None:
        """Admit and schedule under the cluster's ``limits`` (its effective configuration)."""
        vmis = {key_of(v): v for v in objs[VMI]}
        views: list[MigrationView] = []
        for raw in objs[VMIM]:
            await self.each.run(
                VMIM,
                raw,
                "FailedMigration",
                partial(self._view_migration, raw, vmis, views),
            )
        by_key = {f"{key_of(r)[0]}/{key_of(r)[1]}": r for r in objs[VMIM]}
        for view in admit(
            views,
            limits.parallel_migrations_per_cluster,
            limits.parallel_outbound_migrations_per_node,
        ):
            raw = by_key[view.key]
            vmi = vmis.get((key_of(raw)[0], raw["spec"]["vmiName"]))
            await self.each.run(
                VMIM,
                raw,
                "FailedMigration",
                partial(self._schedule, raw, vmi, nodes, objs, limits.network),
            )

    async def _view_migration(
        self,
        raw: dict[str, Any],
        vmis: dict[tuple[str, str], dict[str, Any]],
        views: list[MigrationView],
    ) -> None:
        m = MigrationObject.of(raw)
        vmi = vmis.get(m.vmi_key)
        if m.status.phase is Phase.UNSET:
            raw = await self._new_migration(raw, vmi)
        elif vmi is None and m.status.is_active and m.status.phase is not Phase.PENDING:
            # Deleted mid-migration: fail it, so the target agent stops its incoming QEMU.
            reason = f"VirtualMachineInstance {m.namespace}/{m.vmi_name} was deleted"
            raw = await self._modify(VMIM, m.name, m.namespace, self._failer(reason)) or raw
        m = MigrationObject.of(raw)
        annotations = raw["metadata"].get("annotations") or {}
        views.append(
            MigrationView(
                f"{m.namespace}/{m.name}",
                m.status.phase if m.status.phase is not Phase.UNSET else Phase.PENDING,
                m.status.source_node,
                priority_rank(_priority(raw, annotations)),
                m.created,
            )
        )

    async def _new_migration(
        self, raw: dict[str, Any], vmi: dict[str, Any] | None
    ) -> dict[str, Any]:
        ns, name = key_of(raw)
        node = VMIStatus.of(vmi).node if vmi is not None else None
        spec = raw.get("spec") or {}
        refusal = None
        if spec.get("sendTo") is not None or spec.get("receive") is not None:
            refusal = (
                "cross-cluster migration (spec.sendTo/spec.receive) is not supported by "
                "livemig: migrate within this cluster, without sendTo/receive"
            )
        elif vmi is None:
            refusal = f"VirtualMachineInstance {ns}/{spec.get('vmiName')} does not exist"
        now = self._now()

        def pending(o: dict[str, Any]) -> dict[str, Any] | None:
            if refusal is not None:
                return transition(o, lambda st: st.refuse(refusal, now))
            return transition(o, lambda st: st.admit(node, now))

        return await self._modify(VMIM, name, ns, pending) or raw

    async def _inventory(self, objs: dict[str, list[dict[str, Any]]], *more: Resource) -> Inventory:
        """Cluster settings, policies and namespaces (plus ``more``) for policy resolution;
        an object that does not validate is left out (and says so on itself)."""
        kinds = ("HyperConverged", "KubeVirt", "MigrationPolicy", "Namespace")
        valid = [await self._valid(k, o) for k in kinds for o in objs[k]]
        return Inventory.from_objects([*(v for v in valid if v is not None), *more], self.defaults)

    async def _schedule(
        self,
        raw: dict[str, Any],
        vmi_raw: dict[str, Any] | None,
        nodes: list[NodeView],
        objs: dict[str, list[dict[str, Any]]],
        network: str | None,
    ) -> None:
        ns, name = key_of(raw)
        if vmi_raw is None:
            await self._modify(VMIM, name, ns, self._failer("the VMI disappeared"))
            return
        vmi = validate(vmi_raw)
        assert isinstance(vmi, VirtualMachineInstance)
        source = VMIStatus.of(vmi_raw).node
        earlier = handover_pending(
            source,
            str(vmi_raw["metadata"].get("creationTimestamp", "")),
            [m for r in objs[VMIM] if (m := MigrationObject.of(r)).vmi_key == key_of(vmi_raw)],
        )
        if earlier is not None:
            return  # the VM just moved (``earlier``); start from where it is, once that is written
        memory = vmi.spec.memory_bytes() or 0
        added = (raw.get("spec") or {}).get("addedNodeSelector")
        selector = target_selector(vmi.spec.node_selector, added)
        target, why = choose_node(nodes, memory, selector, source, network)
        if target is None:

            def unschedulable(o: dict[str, Any]) -> dict[str, Any] | None:
                changed = condition_changed(_status(o), "Scheduled", "False", "Unschedulable", why)
                return o if changed else None

            if await self._status_written(VMIM, raw, unschedulable):
                await self.events.record(raw, EventType.WARNING, "Unschedulable", why)
            return
        # The policy is resolved when the migration starts, and recorded (SPEC §3).
        inventory = await self._inventory(objs, vmi)
        ((_, resolution),) = inventory.resolve_all(
            inventory.select([vmi.name], vmi.namespace), self.precedence
        )
        config = inventory.configuration(resolution)
        now = self._now()

        def scheduled(o: dict[str, Any]) -> dict[str, Any] | None:
            out = transition(
                o,
                lambda st: st.schedule(
                    source,
                    target.name,
                    memory,
                    resolution.winner.name if resolution.winner else None,
                    config.as_dict(),
                    now,
                ),
            )
            if out is not None:
                condition(_status(out), "Scheduled", "True", "TargetChosen", why)
            return out

        if await self._status_written(VMIM, raw, scheduled):
            await self.events.record(
                raw,
                EventType.NORMAL,
                "SuccessfulCreate",
                f"migrating {vmi.name} from {source} to {target.name} ({why}); "
                + (
                    f"MigrationPolicy {resolution.winner.name}"
                    if resolution.winner
                    else "no MigrationPolicy: cluster settings"
                ),
            )
        _reserve(nodes, target.name, memory)

    async def _collect_garbage(self, migrations: list[dict[str, Any]]) -> None:
        finished: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for raw in migrations:
            m = MigrationObject.of(raw)
            if m.status.finished:
                finished[m.vmi_key].append(raw)
        for group in finished.values():
            group.sort(
                key=lambda r: (
                    str(r["metadata"].get("creationTimestamp", "")),
                    int(r["metadata"].get("resourceVersion", 0)),
                ),
                reverse=True,
            )
            for old in group[KEEP_FINISHED:]:
                await self._delete_ignoring_missing(VMIM, old["metadata"]["name"], key_of(old)[0])
                self.each.forget(VMIM, old)

    async def _expire_events(self) -> None:
        """Delete events that last happened more than EVENT_TTL ago, as Kubernetes does: a
        fleet that migrates all day must not grow its store without end."""
        now = self.clock.now()
        if self._events_expired_at is not None and now - self._events_expired_at < EVENT_GC_EVERY:
            return
        self._events_expired_at = now
        try:
            events, _ = await self.client.list("Event")
        except (LivemigError, httpx.HTTPError) as exc:
            log.warning("livemig controller: cannot list events to expire them: %s", exc)
            return
        oldest = self.clock.wall() - EVENT_TTL
        for e in events:
            last = epoch_seconds(e.get("lastTimestamp"))
            if last is not None and last < oldest:
                await self._delete_ignoring_missing(
                    "Event", e["metadata"]["name"], e["metadata"].get("namespace")
                )

    # --- writes ------------------------------------------------------------------------------

    async def _modify(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        status: bool = True,
    ) -> dict[str, Any] | None:
        """Write ``change`` (by default to the status subresource); None if the object is gone."""
        try:
            return await self.informer.modify(kind, name, namespace, change, status=status)
        except NotFound:
            return None

    async def _create_ignoring_exists(self, obj: dict[str, Any]) -> None:
        with contextlib.suppress(AlreadyExists, Conflict):  # someone else did it
            await self.informer.create(obj)

    async def _delete_ignoring_missing(self, kind: str, name: str, namespace: str | None) -> None:
        try:
            await self.client.delete(kind, name, namespace)
        except NotFound:
            pass
        except LivemigError as exc:
            log.warning("livemig controller: cannot delete %s %s: %s", kind, name, exc)


def _priority(raw: dict[str, Any], annotations: dict[str, Any]) -> str | None:
    """spec.priority; a migration from an older livemig marked as an evacuation counts as
    system-maintenance."""
    priority = (raw.get("spec") or {}).get("priority")
    if priority is None and annotations.get(PRIORITY_ANNOTATION) == "evacuation":
        return "system-maintenance"
    return str(priority) if priority is not None else None
