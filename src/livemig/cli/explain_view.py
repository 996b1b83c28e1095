"""How `livemig explain` shows a policy resolution: data for JSON/YAML, rich tables for people."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from livemig.api.quantity import format_bytes, human_bytes
from livemig.inventory import Workload
from livemig.policy import (
    DEFAULT,
    MigrationConfiguration,
    PolicyMatch,
    Resolution,
)

GIB = 2**30


def acceptable_completion_seconds(conf: MigrationConfiguration, memory: int | None) -> int | None:
    """completionTimeoutPerGiB × guest memory in GiB (None when unknown or disabled)."""
    if memory is None or conf.completion_timeout_per_gib == 0:
        return None
    return round(conf.completion_timeout_per_gib * memory / GIB)


def _candidate(m: PolicyMatch) -> dict[str, Any]:
    return {
        "name": m.name,
        "score": m.score,
        "matchedKeys": list(m.matched_keys),
        "vmiLabelMatches": len(m.vmi_keys),
    }


def explanation(
    w: Workload,
    res: Resolution,
    conf: MigrationConfiguration,
    notes: list[str],
    defaults: str = "document",
) -> dict[str, Any]:
    """One JSON/YAML item of `explain -o json`."""
    winner = res.winner
    return {
        "kind": w.source.KIND,
        "namespace": w.namespace,
        "name": w.name,
        "policy": winner.name if winner else None,
        "score": winner.score if winner else 0,
        "reason": res.reason,
        "precedence": res.precedence.value,
        "defaults": defaults,
        "runnerUp": res.runner_up.name if res.runner_up else None,
        "otherRulePolicy": res.other_rule_winner,
        "candidates": [_candidate(m) for m in res.ranked],
        "memoryBytes": w.memory_bytes,
        "acceptableCompletionSeconds": acceptable_completion_seconds(conf, w.memory_bytes),
        "configuration": conf.as_dict(),
        "sources": dict(conf.sources),
        "notes": notes,
    }


def _show_value(name: str, value: object, memory: int | None) -> str:
    if name == "bandwidthPerMigration":
        assert isinstance(value, int)
        if value == 0:
            return "0 (no limit)"
        return f"{format_bytes(value)} ({human_bytes(value)}/s)"
    if name == "completionTimeoutPerGiB":
        if value == 0:
            return "0 (disabled)"
        if memory is not None:
            assert isinstance(value, int)
            total = round(value * memory / GIB)
            return f"{value} s/GiB → {total} s for {human_bytes(memory)}"
        return f"{value} s/GiB"
    if name == "progressTimeout":
        return "0 (disabled)" if value == 0 else f"{value} s"
    if name == "maxDowntimeMs":
        return f"{value} ms"
    if value is None:
        return "(primary network)" if name == "network" else "—"
    return str(value).lower() if isinstance(value, bool) else str(value)


def render_explanation(
    w: Workload, res: Resolution, conf: MigrationConfiguration, notes: list[str]
) -> RenderableType:
    """A block for one VMI: who wins and why, the runner-up, the settings with sources."""
    lines: list[RenderableType] = [Text(w.ref, style="bold")]
    if w.source.KIND == "VirtualMachine":
        lines.append(Text("  (no VMI given: resolved as the VMI its template would start)"))
    winner = res.winner
    if winner is None:
        lines.append(Text("  policy:    none applies — cluster settings and defaults"))
    else:
        lines.append(Text(f"  policy:    MigrationPolicy/{winner.name}", style="green"))
        lines.append(Text(f"  why:       {res.reason} — {res.precedence.describe()}"))
        lines.append(Text(f"  matched:   {', '.join(winner.matched_keys) or '(empty selectors)'}"))
    if res.runner_up is not None:
        ru = res.runner_up
        lines.append(
            Text(
                f"  runner-up: MigrationPolicy/{ru.name} (score {ru.score}; "
                f"keys {', '.join(ru.matched_keys) or '—'})"
            )
        )
    if res.other_rule_winner is not None:
        other = "KubeVirt" if res.precedence.value == "documented" else "documented"
        lines.append(
            Text(
                f"  note:      the {other} precedence rule picks "
                f"MigrationPolicy/{res.other_rule_winner} instead",
                style="yellow",
            )
        )
    lines += [Text(f"  note:      {note}", style="yellow") for note in notes]
    table = Table(box=None, padding=(0, 2), show_edge=False, pad_edge=False)
    table.add_column("  setting")
    table.add_column("value")
    table.add_column("source")
    for name, value in conf.as_dict().items():
        source = conf.sources[name]
        style = "dim" if source == DEFAULT else None
        table.add_row(f"  {name}", _show_value(name, value, w.memory_bytes), source, style=style)
    lines.append(table)
    lines.append(Text(""))
    return Group(*lines)


def summary_table(rows: list[tuple[Workload, Resolution, MigrationConfiguration]]) -> Table:
    """One line per VMI, for large inputs."""
    table = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 2))
    for col in ("NAMESPACE", "NAME", "POLICY", "SCORE", "BANDWIDTH", "TIMEOUT/GiB", "POST-COPY"):
        table.add_column(col)
    for w, res, conf in rows:
        flag = " *" if res.rules_disagree else ""
        table.add_row(
            w.namespace,
            w.name,
            (res.winner.name if res.winner else "<none>") + flag,
            str(res.winner.score if res.winner else 0),
            format_bytes(conf.bandwidth_per_migration)
            if conf.bandwidth_per_migration
            else "unlimited",
            str(conf.completion_timeout_per_gib),
            "yes" if conf.allow_post_copy else "no",
        )
    return table
