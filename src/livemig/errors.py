"""The one exception tree of livemig.

::

    LivemigError                      every error livemig raises on purpose
     ├── InvalidInput                 the user's input is wrong; permanent until they fix it
     │    ├── QuantityError           a string is not a Kubernetes quantity
     │    └── LoadError               files/objects failed to load; carries every Problem found
     ├── UsageError                   the command line asks for something impossible
     ├── StoreError                   the object store refused a request
     │    ├── NotFound                 no such object (permanent)
     │    ├── AlreadyExists            an object of that kind/namespace/name exists (permanent)
     │    ├── Conflict                 a stale resourceVersion: re-read and retry (retry later)
     │    └── Gone                     a watch asked for history that was compacted: re-list
     ├── HypervisorError              a hypervisor refused or failed (carries the QMP command)
     │    └── VMGone                  the VM's process no longer runs (permanent)
     └── MigrationError               a migration request cannot be honoured
          ├── CancelRefused           cancelling is impossible now (post-copy)
          └── IllegalTransition       that lifecycle step does not apply in the current phase

Errors carry their evidence (file, line, object, field) in ``Problem`` records so the CLI can
print them one per line and tools can read them as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input, located as precisely as we know."""

    message: str
    file: str | None = None
    line: int | None = None
    object: str | None = None  # "Kind/namespace/name" or "Kind/name"
    field: str | None = None  # dotted path, list indexes in brackets: spec.volumes[0].name
    code: str = "LM002"  # the lint code this problem is reported under (see livemig.lint)

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        parts = [p for p in (self.object, self.field) if p]
        prefix = ": ".join(parts)
        return f"{where}{prefix}: {self.message}" if prefix else f"{where}{self.message}"


class LivemigError(Exception):
    """Base of every error livemig raises on purpose."""


class InvalidInput(LivemigError):
    """The input is wrong; retrying will not help until it is fixed."""


class QuantityError(InvalidInput, ValueError):
    """A value is not a valid Kubernetes quantity (the message may hold a suggestion)."""


class LoadError(InvalidInput):
    """Loading failed; ``problems`` lists every problem found, not only the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the input"
        super().__init__(head + "\n" + "\n".join(f"  {p}" for p in self.problems))


class UsageError(LivemigError):
    """The command line asks for something that cannot be done."""


class HypervisorError(LivemigError):
    """A hypervisor operation failed; ``command``/``arguments`` say what was sent."""

    def __init__(
        self, message: str, command: str | None = None, arguments: object | None = None
    ) -> None:
        super().__init__(message)
        self.command = command
        self.arguments = arguments


class VMGone(HypervisorError):
    """The VM's process no longer runs: adopting or retrying it will not bring it back."""


class MigrationError(LivemigError):
    """A migration request cannot be honoured."""


class CancelRefused(MigrationError):
    """The migration is in post-copy: the only complete guest is split across two hosts."""


class IllegalTransition(MigrationError):
    """A lifecycle step that does not apply in the migration's current phase (someone else
    moved it on first: a level-triggered writer then has nothing to write)."""


class StoreError(LivemigError):
    """The object store refused a request."""


class NotFound(StoreError):
    """No such object."""


class AlreadyExists(StoreError):
    """An object with that kind, namespace and name exists."""


class Conflict(StoreError):
    """The write was based on a stale resourceVersion; re-read the object and retry."""


class Gone(StoreError):
    """The requested revision is older than the kept history; list again, then watch."""
