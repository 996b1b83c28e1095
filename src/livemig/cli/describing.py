"""``describe``: one object as a readable summary — sizes in Mi/Gi, times as ages, the
migration's figures and phases — ending with its events, as ``kubectl describe`` does."""

from __future__ import annotations

from typing import Any

import yaml

from livemig.api.lifecycle import Figures, MigrationStatus
from livemig.api.quantity import short_bytes
from livemig.api.vmi_status import VMIStatus
from livemig.cli.getting import VMI, VMIM, Rows, age
from livemig.client import ApiClient


def _pairs(rows: list[tuple[str, object]], indent: int = 0) -> list[str]:
    shown = [(k, v) for k, v in rows if v not in (None, "", [], {})]
    width = max((len(k) for k, _ in shown), default=0) + 2
    pad = " " * indent
    return [f"{pad}{(k + ':').ljust(width)}{v}" for k, v in shown]


def _labels(labels: dict[str, Any] | None) -> str:
    if not labels:
        return "<none>"
    return "\n".join(f"{k}={v}" for k, v in sorted(labels.items())).replace("\n", "\n" + " " * 14)


def _conditions(status: dict[str, Any]) -> list[str]:
    conditions = status.get("conditions") or []
    if not conditions:
        return []
    rows = Rows(["TYPE", "STATUS", "REASON", "MESSAGE"])
    lines = rows.lines(
        [
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                str(c.get("message", "")),
            ]
            for c in conditions
        ],
        header=True,
    )
    return ["Conditions:", *("  " + line for line in lines)]


def _rate(n: int) -> str:
    return f"{short_bytes(n)}/s" if n else "0"


def _migration(obj: dict[str, Any]) -> list[str]:
    st = MigrationStatus.of(obj)
    spec = obj.get("spec") or {}
    f = st.figures or Figures()
    lines = _pairs(
        [
            ("VMI", spec.get("vmiName")),
            ("Priority", spec.get("priority") or "<unset>"),
            ("Phase", st.phase.value or "Pending"),
            ("Source", st.source_node),
            ("Target", st.target_node),
            ("Target address", st.target_address),
            ("Mode", st.mode.value if st.mode else None),
            ("Policy", st.policy or ("<none: cluster settings>" if st.configuration else None)),
            ("Started", f"{age(st.started)} ago" if st.started else None),
            ("Ended", f"{age(st.ended)} ago" if st.ended else None),
            ("Duration", f"{st.duration:.1f} s" if st.duration else None),
            ("Downtime", f"{st.downtime_ms} ms" if st.downtime_ms is not None else None),
            ("Reason", st.reason),
            ("Abort requested", st.abort_requested),
        ]
    )
    if f.total:
        lines += [
            "Transfer:",
            *_pairs(
                [
                    (
                        "Data",
                        f"{short_bytes(f.total)} total, {short_bytes(f.processed)} sent, "
                        f"{short_bytes(f.remaining)} left",
                    ),
                    (
                        "Rates",
                        f"sending {_rate(f.transfer_rate)}, guest dirtying {_rate(f.dirty_rate)}",
                    ),
                    ("Passes", f.iterations),
                ],
                indent=2,
            ),
        ]
    if st.configuration:
        c = st.configuration
        bw = int(c.get("bandwidthPerMigration") or 0)
        lines += [
            "Configuration:",
            *_pairs(
                [
                    ("Bandwidth", _rate(bw) if bw else "unlimited"),
                    ("Completion timeout", f"{c.get('completionTimeoutPerGiB')} s/GiB"),
                    ("Progress timeout", f"{c.get('progressTimeout')} s"),
                    ("Post-copy", c.get("allowPostCopy")),
                    ("Auto-converge", c.get("allowAutoConverge")),
                    ("Workload disruption", c.get("allowWorkloadDisruption")),
                ],
                indent=2,
            ),
        ]
    if st.transitions:
        rows = Rows(["PHASE", "AGO"])
        lines += [
            "Phases:",
            *(
                "  " + line
                for line in rows.lines(
                    [[p.value, age(when)] for p, when in st.transitions], header=True
                )
            ),
        ]
    return lines


def _vmi(obj: dict[str, Any]) -> list[str]:
    st = VMIStatus.of(obj)
    spec = obj.get("spec") or {}
    domain = spec.get("domain") or {}
    memory = (domain.get("memory") or {}).get("guest") or (
        (domain.get("resources") or {}).get("requests") or {}
    ).get("memory")
    last = st.migration or {}
    lines = _pairs(
        [
            ("Phase", st.phase.value or "Pending"),
            ("Node", st.node),
            ("Reason", st.reason),
            ("Memory", memory),
            ("Eviction", spec.get("evictionStrategy") or "<cluster's>"),
            (
                "Node selector",
                ", ".join(f"{k}={v}" for k, v in (spec.get("nodeSelector") or {}).items()),
            ),
            ("Volumes", ", ".join(str(v.get("name")) for v in spec.get("volumes") or [])),
        ]
    )
    if last:
        lines += [
            "Last migration:",
            *_pairs(
                [
                    ("From", last.get("sourceNode")),
                    ("To", last.get("targetNode")),
                    ("Mode", last.get("mode")),
                    (
                        "Downtime",
                        f"{last['downtimeMs']} ms" if last.get("downtimeMs") is not None else None,
                    ),
                    (
                        "Duration",
                        f"{last['durationSeconds']} s" if last.get("durationSeconds") else None,
                    ),
                ],
                indent=2,
            ),
        ]
    return lines


def _node(obj: dict[str, Any]) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    capacity = int((status.get("capacity") or {}).get("memoryBytes", 0))
    lines = _pairs(
        [
            ("Unschedulable", bool(spec.get("unschedulable"))),
            (
                "Taints",
                ", ".join(f"{t.get('key')}:{t.get('effect')}" for t in spec.get("taints") or [])
                or "<none>",
            ),
            ("Memory", short_bytes(capacity) if capacity else None),
            ("Addresses", ", ".join(str(a.get("address")) for a in status.get("addresses") or [])),
        ]
    )
    drain = status.get("drain") or {}
    if drain:
        lines += [
            "Drain:",
            *_pairs(
                [
                    ("Started", f"{age(drain.get('startTimestamp'))} ago"),
                    (
                        "Finished",
                        f"{age(drain['completionTimestamp'])} ago"
                        if drain.get("completionTimestamp")
                        else None,
                    ),
                    ("VMIs left", drain.get("vmsLeft")),
                    ("Migrating", drain.get("inFlight")),
                    ("Queued", drain.get("queued")),
                    ("Migrated", drain.get("migrated")),
                    ("Failed attempts", drain.get("failedAttempts")),
                    ("Moved", short_bytes(int(drain.get("bytesMoved", 0)))),
                    (
                        "Time left",
                        f"about {drain['estimatedSecondsLeft']} s"
                        if drain.get("estimatedSecondsLeft") is not None and drain.get("vmsLeft")
                        else None,
                    ),
                ],
                indent=2,
            ),
            *(f"  Blocked:  {b['vmi']}: {b['reason']}" for b in drain.get("blocked") or []),
        ]
    return lines


def _spec(obj: dict[str, Any]) -> list[str]:
    spec = obj.get("spec")
    if not spec:
        return []
    text = yaml.safe_dump(spec, sort_keys=False).rstrip("\n")
    return ["Spec:", *("  " + line for line in text.splitlines())]


async def describe_text(client: ApiClient, obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    kind = str(obj.get("kind", ""))
    lines = _pairs(
        [
            ("Name", meta["name"]),
            ("Namespace", meta.get("namespace")),
            ("Kind", kind),
            ("Labels", _labels(meta.get("labels"))),
            ("Annotations", _labels(meta.get("annotations"))),
            ("Created", f"{age(meta.get('creationTimestamp'))} ago"),
        ]
    )
    body = {VMIM: _migration, VMI: _vmi, "Node": _node}.get(kind, _spec)(obj)
    lines += body
    lines += _conditions(obj.get("status") or {})
    lines += await _events_of(client, obj)
    return "\n".join(lines) + "\n"


async def _events_of(client: ApiClient, obj: dict[str, Any]) -> list[str]:
    meta = obj["metadata"]
    events, _ = await client.list("Event", meta.get("namespace") or "default")
    mine = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("kind") == obj.get("kind")
        and (e.get("involvedObject") or {}).get("name") == meta["name"]
        and (e.get("involvedObject") or {}).get("uid") in (None, meta.get("uid"))
    ]
    if not mine:
        return ["Events:  <none>"]
    mine.sort(key=lambda e: str(e.get("lastTimestamp") or ""))
    rows = Rows(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"])
    table = rows.lines(
        [
            [
                str(e.get("type") or ""),
                str(e.get("reason") or ""),
                age(e.get("lastTimestamp"))
                + (
                    f" (x{e['count']} over {age(e.get('firstTimestamp'))})"
                    if (e.get("count") or 1) > 1
                    else ""
                ),
                str((e.get("source") or {}).get("component") or ""),
                str(e.get("message") or ""),
            ]
            for e in mine
        ],
        header=True,
    )
    return ["Events:", *("  " + line for line in table)]
