"""The ``livemig`` command."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from livemig.api.loading import LoadResult, load_paths
from livemig.cli.cluster_cmds import DefaultsOption
from livemig.cli.explain_view import explanation, render_explanation, summary_table
from livemig.errors import LoadError
from livemig.inventory import Inventory
from livemig.lint import CODES, Finding, Severity, from_problem, lint
from livemig.policy import DefaultsProfile, Precedence

app = typer.Typer(
    help="livemig: live migration for QEMU/KVM VMs, configured the KubeVirt way.\n\n"
    "Start with `livemig demo` (a local 3-node cluster of real QEMU VMs, one node drained), "
    "or `livemig explain -f DUMP.yaml` on the output of "
    "`oc get hyperconverged,migrationpolicy,ns,vm,vmi -A -o yaml`.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"livemig {version('livemig')}\n")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print livemig's version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """(options that apply before any command)"""


# Piped output is not cut to 80 columns (like kubectl); a terminal gets its own width.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 4000)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 4000)


def show(renderable: RenderableType | str) -> None:
    """Print for a person; piped output loses rich's trailing padding so it diffs cleanly."""
    if isinstance(renderable, str):
        renderable = Text(renderable)  # our strings hold [brackets] that are not markup
    if out.is_terminal:
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable)
    sys.stdout.write("\n".join(line.rstrip() for line in captured.get().split("\n")))


class ExplainFormat(StrEnum):
    table = "table"
    summary = "summary"
    json = "json"
    yaml = "yaml"


class LintFormat(StrEnum):
    table = "table"
    json = "json"


FilesOption = Annotated[
    list[str],
    typer.Option(
        "-f",
        "--filename",
        metavar="PATH",
        help="YAML/JSON file, folder (read recursively) or - for stdin. Repeatable.",
    ),
]
PrecedenceOption = Annotated[
    Precedence,
    typer.Option(
        "--policy-precedence",
        help="Tie-break between equally-scored policies: 'documented' (the OpenShift document: "
        "sorted matched label keys, then name) or 'kubevirt' (upstream code: more VMI-label "
        "matches, then name).",
        case_sensitive=False,
    ),
]


def _load(files: list[str]) -> LoadResult:
    from livemig.cli.cluster_cmds import load_files

    return load_files(files)


def _dump(data: Any, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


@app.command()
def explain(
    files: FilesOption,
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="NAME", help="VMI or VM names to explain (default: all)."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("-n", "--namespace", metavar="NS", help="Only this namespace.")
    ] = None,
    precedence: PrecedenceOption = Precedence.DOCUMENTED,
    defaults: DefaultsOption = DefaultsProfile.DOCUMENT,
    output: Annotated[
        ExplainFormat,
        typer.Option(
            "-o", "--output", help="table (a block per VMI), summary (a line per VMI), json, yaml."
        ),
    ] = ExplainFormat.table,
) -> None:
    """Show which MigrationPolicy each VMI gets, why, and the settings its migrations use.

    Reads HyperConverged (or KubeVirt), MigrationPolicy, Namespace, VirtualMachine and
    VirtualMachineInstance objects. A VirtualMachine with no VMI of its name counts as the VMI
    its template would start. Every setting says where its value comes from: "default", the
    cluster object, or the winning MigrationPolicy.

    Example: livemig explain -f dump.yaml db-0 -n prod --policy-precedence kubevirt
    """
    loaded = _load(files)
    inv = Inventory.from_objects((o.obj for o in loaded.objects), defaults)
    chosen = inv.select(names or (), namespace)
    if names:
        missing = sorted(set(names) - {w.name for w in chosen})
        if missing:
            where = f" in namespace {namespace}" if namespace else ""
            err.print(f"error: no VMI or VM named {', '.join(missing)}{where} in the input")
            raise typer.Exit(1)
    cluster = inv.cluster
    rows = [(w, res, inv.configuration(res)) for w, res in inv.resolve_all(chosen, precedence)]
    if output in (ExplainFormat.json, ExplainFormat.yaml):
        _dump(
            [explanation(w, r, c, inv.notes(w), defaults.value) for w, r, c in rows],
            output.value,
        )
        return
    if not rows:
        err.print("no VMI or VM in the input")
        return
    src = cluster.source or "no HyperConverged or KubeVirt object: defaults only"
    show(
        f"cluster settings: {src}; defaults: {defaults.describe()}; "
        f"precedence: {precedence.describe()}\n"
    )
    if output is ExplainFormat.summary:
        show(summary_table(rows))
        if any(r.rules_disagree for _, r, _ in rows):
            show("\n* the other precedence rule picks a different policy")
        return
    for w, r, c in rows:
        show(render_explanation(w, r, c, inv.notes(w)))


@app.command(name="lint")
def lint_command(
    files: FilesOption,
    precedence: PrecedenceOption = Precedence.DOCUMENTED,
    defaults: DefaultsOption = DefaultsProfile.DOCUMENT,
    output: Annotated[
        LintFormat, typer.Option("-o", "--output", help="table or json (a list of findings).")
    ] = LintFormat.table,
) -> None:
    """Check live-migration configuration: validation errors, then advice.

    Each finding has a stable code (LM001…), a severity, the object and field, and what to do.
    Exits 1 when any finding is an error, else 0. `livemig lint-codes` lists every code.
    """
    try:
        loaded = load_paths(files)
    except LoadError as exc:
        findings = [from_problem(p) for p in exc.problems]
    else:
        inv = Inventory.from_objects((o.obj for o in loaded.objects), defaults)
        findings = lint(inv, loaded.skipped, precedence)
    _print_findings(findings, output)
    if any(f.severity is Severity.ERROR for f in findings):
        raise typer.Exit(1)


def _print_findings(findings: list[Finding], output: LintFormat) -> None:
    if output is LintFormat.json:
        _dump([f.as_dict() for f in findings], "json")
        return
    if not findings:
        show("no findings")
        return
    table = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 1), expand=False)
    for col in ("SEVERITY", "CODE", "OBJECT", "FIELD", "MESSAGE"):
        table.add_column(col, overflow="fold")
    style = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
    for f in findings:
        where = f.object or (f"{f.file}:{f.line}" if f.line else f.file) or ""
        cells = (f.severity.value, f.code, where, f.field or "", f.message)
        table.add_row(*(Text(c) for c in cells), style=style[f.severity])
    show(table)
    counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
    plural = {Severity.ERROR: "errors", Severity.WARNING: "warnings", Severity.INFO: "info"}
    show(", ".join(f"{n} {s.value if n == 1 else plural[s]}" for s, n in counts.items()))


@app.command(name="lint-codes")
def lint_codes() -> None:
    """List every lint code with its severity and meaning."""
    for code, (severity, title) in CODES.items():
        show(f"{code}  {severity.value:<7}  {title}")


# The cluster commands live in their own module; registering them here keeps one `livemig`.
from livemig.cli.cluster_cmds import configure_logging, register  # noqa: E402
from livemig.cli.demo import register_demo  # noqa: E402
from livemig.cli.node_cmds import register_nodes  # noqa: E402

register(app)
register_nodes(app)
register_demo(app)
configure_logging()
