"""The migration lifecycle, typed: one frozen record per migration and pure transitions.

Every component reads a migration's status through :class:`MigrationStatus` and changes it only
with a transition (admit, schedule, preparing, target_ready, start, switch_mode, progress,
finish, fail, cancel). A transition that does not apply in the current phase raises
:class:`IllegalTransition`; :func:`transition` turns that into "nothing to write", which is what
a level-triggered writer wants when someone else got there first. The same for a VMI's runtime
status (:class:`VMIStatus`). Phase names and ``status`` dict shapes (KubeVirt's) appear here and
nowhere else.

::

    UNSET ─admit─▶ Pending ─schedule─▶ Scheduled ─preparing─▶ PreparingTarget
      │                                  (via Scheduling)           │ target_ready
      └─refuse─▶ Failed ◀──fail (any unfinished phase)──┐          ▼
                                                      Running ◀─start─ TargetReady
                                                        │ switch_mode: PreCopy → PostCopy | Paused
                                                        └─finish─▶ Succeeded
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from livemig.api.status import timestamp
from livemig.api.transfer import MigrationMode, TransferStats
from livemig.errors import CancelRefused, IllegalTransition

USER_CANCEL = "cancelled by user"
#: KubeVirt's mark on a migration its evacuation (drain) controller made: the node drained.
EVACUATION_ANNOTATION = "kubevirt.io/evacuationMigration"


class Phase(StrEnum):
    """KubeVirt's VirtualMachineInstanceMigration phases ("" before the controller saw it)."""

    UNSET = ""
    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    SCHEDULED = "Scheduled"
    PREPARING_TARGET = "PreparingTarget"
    TARGET_READY = "TargetReady"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)

    @property
    def active(self) -> bool:
        """Counts against the parallel-migration limits."""
        return self in ACTIVE_PHASES

    @classmethod
    def parse(cls, value: object) -> Phase:
        """The phase named ``value``; UNSET for none (or a name this version does not know)."""
        try:
            return cls(str(value or ""))
        except ValueError:
            return cls.UNSET


ACTIVE_PHASES = frozenset(
    {Phase.SCHEDULING, Phase.SCHEDULED, Phase.PREPARING_TARGET, Phase.TARGET_READY, Phase.RUNNING}
)


@dataclass(frozen=True, slots=True)
class Figures:
    """The transfer as last reported: bytes, bytes per second, passes, seconds."""

    total: int = 0
    processed: int = 0
    remaining: int = 0
    dirty_rate: int = 0
    transfer_rate: int = 0
    iterations: int = 0
    elapsed: float = 0.0

    @classmethod
    def of(cls, sample: TransferStats) -> Figures:
        return cls(
            sample.total_bytes,
            sample.processed_bytes,
            sample.remaining_bytes,
            round(sample.dirty_rate),
            round(sample.transfer_rate),
            sample.iteration,
            round(sample.elapsed, 3),
        )

    @property
    def empty(self) -> bool:
        """No bytes counted (QEMU's answer once a migration is cancelled)."""
        return self.total == 0 and self.processed == 0


_FIGURE_KEYS = {
    "total": "dataTotalBytes",
    "processed": "dataProcessedBytes",
    "remaining": "dataRemainingBytes",
    "dirty_rate": "dirtyRateBytesPerSecond",
    "transfer_rate": "transferRateBytesPerSecond",
    "iterations": "iterations",
    "elapsed": "elapsedSeconds",
}


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """A migration's status as one immutable record (KubeVirt's ``status`` +
    ``status.migrationState``)."""

    phase: Phase = Phase.UNSET
    mode: MigrationMode | None = None
    source_node: str | None = None
    target_node: str | None = None
    target_address: str | None = None
    memory_bytes: int = 0
    policy: str | None = None
    configuration: Mapping[str, Any] | None = None
    started: str | None = None
    ended: str | None = None
    figures: Figures | None = None
    downtime_ms: int | None = None
    duration: float | None = None
    reason: str | None = None
    aborted: bool = False
    #: Someone asked the source to abort (a target that stopped reporting); the source agent
    #: cancels and records what QEMU really did.
    abort_requested: str | None = None
    #: Post-copy recovery: where the target listens again after the link broke, and how many
    #: times it has offered to (the source reconnects to each new offer).
    recovery_address: str | None = None
    recoveries: int = 0
    #: The newest offer the source found spent (it asks for a new one).
    recovery_spent: int = 0
    #: The target's QEMU died while Running: a source waiting on a broken post-copy link has
    #: nothing left to wait for.
    target_lost: bool = False
    transitions: tuple[tuple[Phase, str], ...] = ()
    #: migrationState keys this version does not model, kept as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)

    # --- predicates ----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.phase.finished

    @property
    def succeeded(self) -> bool:
        return self.phase is Phase.SUCCEEDED

    @property
    def is_active(self) -> bool:
        """Not finished: admitted or waiting to be."""
        return not self.phase.finished

    @property
    def holds_slot(self) -> bool:
        """Counts against parallelMigrationsPerCluster and the per-node limit."""
        return self.phase.active

    @property
    def in_post_copy(self) -> bool:
        return self.mode is MigrationMode.POST_COPY

    @property
    def can_cancel(self) -> bool:
        """An unfinished migration can be cancelled unless its guest is split (post-copy)."""
        return not self.finished and not self.in_post_copy

    def involves(self, node: str) -> bool:
        return node in (self.source_node, self.target_node)

    # --- transitions ---------------------------------------------------------------------

    def _expect(self, step: str, *phases: Phase) -> None:
        if self.phase not in phases:
            wanted = " or ".join(p.value or "new" for p in phases)
            raise IllegalTransition(
                f"{step}: the migration is {self.phase.value or 'new'}, not {wanted}"
            )

    def _to(self, phase: Phase, now: datetime, **changes: Any) -> MigrationStatus:
        return replace(
            self, phase=phase, transitions=(*self.transitions, (phase, timestamp(now))), **changes
        )

    def admit(self, source_node: str | None, now: datetime) -> MigrationStatus:
        """The controller saw it: it waits for a slot."""
        self._expect("admit", Phase.UNSET)
        return self._to(Phase.PENDING, now, source_node=source_node)

    def refuse(self, reason: str, now: datetime) -> MigrationStatus:
        """It can never run (no such VMI, an unsupported request)."""
        self._expect("refuse", Phase.UNSET)
        return self._to(Phase.FAILED, now, reason=reason, ended=timestamp(now))

    def schedule(
        self,
        source_node: str | None,
        target_node: str,
        memory_bytes: int,
        policy: str | None,
        configuration: Mapping[str, Any],
        now: datetime,
    ) -> MigrationStatus:
        """Admitted, with a target and the configuration resolved now (SPEC §3)."""
        self._expect("schedule", Phase.PENDING)
        return self._to(Phase.SCHEDULING, now)._to(
            Phase.SCHEDULED,
            now,
            source_node=source_node,
            target_node=target_node,
            memory_bytes=memory_bytes,
            policy=policy,
            configuration=dict(configuration),
            mode=MigrationMode.PRE_COPY,
        )

    def preparing(self, now: datetime) -> MigrationStatus:
        self._expect("prepare the target", Phase.SCHEDULED)
        return self._to(Phase.PREPARING_TARGET, now)

    def target_ready(self, address: str, now: datetime) -> MigrationStatus:
        self._expect("target ready", Phase.PREPARING_TARGET)
        return self._to(Phase.TARGET_READY, now, target_address=address)

    def start(self, now: datetime) -> MigrationStatus:
        self._expect("start", Phase.TARGET_READY)
        return self._to(Phase.RUNNING, now, started=timestamp(now))

    def progress(self, figures: Figures) -> MigrationStatus:
        self._expect("report progress", Phase.RUNNING)
        return replace(self, figures=figures)

    def fail_before_transfer(self, reason: str, now: datetime) -> MigrationStatus:
        """Fail it if no memory has moved yet (admitted, not Running); a Running one is the
        source's to end (see request_abort)."""
        self._expect(
            "fail before the transfer",
            Phase.PENDING,
            Phase.SCHEDULING,
            Phase.SCHEDULED,
            Phase.PREPARING_TARGET,
            Phase.TARGET_READY,
        )
        return self.fail(reason, now)

    def request_abort(self, reason: str) -> MigrationStatus:
        """Ask the source to cancel a Running pre-copy migration; it records the outcome QEMU
        reports (which may still be success, if the copy completed first)."""
        self._expect("request an abort", Phase.RUNNING)
        if not self.can_cancel or self.abort_requested:
            raise IllegalTransition("request an abort: already requested, or in post-copy")
        return replace(self, abort_requested=reason)

    def switch_mode(self, mode: MigrationMode) -> MigrationStatus:
        """Post-copy or a paused guest, recorded *before* the hypervisor is told, so a cancel
        judged on this record can never race the switch."""
        self._expect("switch mode", Phase.RUNNING)
        if self.abort_requested:
            raise IllegalTransition(f"switch to {mode.value}: an abort was requested")
        if self.in_post_copy and mode is not MigrationMode.POST_COPY:
            raise IllegalTransition(f"switch to {mode.value}: post-copy cannot be left")
        return replace(self, mode=mode)

    def offer_recovery(self, address: str) -> MigrationStatus:
        """The target listens again at ``address`` after the post-copy link broke."""
        self._expect("offer a post-copy recovery", Phase.RUNNING)
        if not self.in_post_copy:
            raise IllegalTransition("offer a post-copy recovery: the migration is not in post-copy")
        return replace(self, recovery_address=address, recoveries=self.recoveries + 1)

    def spend_recovery(self, number: int) -> MigrationStatus:
        """The source could not reconnect to offer ``number``: the target should offer anew."""
        self._expect("spend a post-copy recovery offer", Phase.RUNNING)
        if number <= self.recovery_spent:
            raise IllegalTransition(f"offer {number} is already spent")
        return replace(self, recovery_spent=number)

    @property
    def recovery_wanted(self) -> bool:
        """The source has spent the latest offer and waits for a new one."""
        return self.recoveries > 0 and self.recovery_spent >= self.recoveries

    def report_target_lost(self) -> MigrationStatus:
        """The target agent saw its incoming QEMU die while the migration ran."""
        self._expect("report the target lost", Phase.RUNNING)
        return replace(self, target_lost=True)

    def finish(
        self,
        now: datetime,
        figures: Figures | None,
        downtime_ms: int | None,
        duration: float | None,
        mode: MigrationMode | None = None,
    ) -> MigrationStatus:
        self._expect("finish", Phase.RUNNING)
        return self._to(
            Phase.SUCCEEDED,
            now,
            ended=timestamp(now),
            figures=_keep(self.figures, figures),
            downtime_ms=downtime_ms,
            duration=duration,
            mode=mode or self.mode,
            reason=None,
        )

    def fail(
        self,
        reason: str,
        now: datetime,
        figures: Figures | None = None,
        duration: float | None = None,
    ) -> MigrationStatus:
        """It ended without moving the VM; the last transfer figures stay."""
        if self.finished:
            raise IllegalTransition(f"fail: the migration already {self.phase.value}")
        return self._to(
            Phase.FAILED,
            now,
            ended=timestamp(now),
            reason=reason,
            figures=_keep(self.figures, figures),
            duration=duration if duration is not None else self.duration,
        )

    def cancel(self, now: datetime, figures: Figures | None = None) -> MigrationStatus:
        """Ended by the user; CancelRefused in post-copy (the guest is split)."""
        if not self.can_cancel:
            if self.finished:
                raise IllegalTransition(f"cancel: the migration already {self.phase.value}")
            raise CancelRefused(
                "the migration is in post-copy and cannot be cancelled: the guest's memory is "
                "split between source and target; wait for it to end"
            )
        return replace(self.fail(USER_CANCEL, now, figures), aborted=True)

    # --- the API's shape -----------------------------------------------------------------

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> MigrationStatus:
        """The status of a migration object (as the API holds it)."""
        return cls.from_status(obj.get("status") or {})

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> MigrationStatus:
        state = dict(status.get("migrationState") or {})
        figures = None
        if any(key in state for key in _FIGURE_KEYS.values()):
            figures = Figures(
                **{
                    attr: _number(state.get(key), float if attr == "elapsed" else int)
                    for attr, key in _FIGURE_KEYS.items()
                }
            )
        try:
            mode = MigrationMode(state["mode"]) if state.get("mode") else None
        except ValueError:
            mode = None
        transitions = tuple(
            (Phase.parse(t.get("phase")), str(t.get("phaseTransitionTimestamp", "")))
            for t in status.get("phaseTransitionTimestamps") or []
            if isinstance(t, Mapping)
        )
        return cls(
            phase=Phase.parse(status.get("phase")),
            mode=mode,
            source_node=state.get("sourceNode"),
            target_node=state.get("targetNode"),
            target_address=state.get("targetNodeAddress"),
            memory_bytes=_number(state.get("memoryBytes"), int),
            policy=state.get("migrationPolicyName"),
            configuration=state.get("migrationConfiguration"),
            started=state.get("startTimestamp"),
            ended=state.get("endTimestamp"),
            figures=figures,
            downtime_ms=state.get("downtimeMs"),
            duration=state.get("durationSeconds"),
            reason=state.get("failureReason"),
            aborted=state.get("abortStatus") == "Succeeded",
            abort_requested=state.get("abortRequested"),
            recovery_address=state.get("recoveryAddress"),
            recoveries=_number(state.get("postCopyRecoveries"), int),
            recovery_spent=_number(state.get("postCopyRecoverySpent"), int),
            target_lost=state.get("targetLost") is True,
            transitions=transitions,
            extra={k: v for k, v in state.items() if k not in _STATE_KEYS},
        )

    def to_status(self, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``status`` dict: ``base``'s other keys (conditions) kept, this record's written."""
        out = dict(base or {})
        state: dict[str, Any] = dict(self.extra)
        values: dict[str, Any] = {
            "sourceNode": self.source_node,
            "targetNode": self.target_node,
            "targetNodeAddress": self.target_address,
            "memoryBytes": self.memory_bytes or None,
            "migrationPolicyName": self.policy,
            "migrationConfiguration": (
                dict(self.configuration) if self.configuration is not None else None
            ),
            "mode": self.mode.value if self.mode else None,
            "startTimestamp": self.started,
            "endTimestamp": self.ended,
            "downtimeMs": self.downtime_ms,
            "durationSeconds": self.duration,
            "failureReason": self.reason if self.phase is Phase.FAILED else None,
            "abortStatus": "Succeeded" if self.aborted else None,
            "abortRequested": self.abort_requested if not self.finished else None,
            "recoveryAddress": self.recovery_address if not self.finished else None,
            "postCopyRecoveries": self.recoveries or None,
            "postCopyRecoverySpent": self.recovery_spent or None,
            "targetLost": True if self.target_lost else None,
        }
        if self.finished:
            values["completed"] = self.succeeded
            values["failed"] = not self.succeeded
        if self.figures is not None:
            values.update({key: getattr(self.figures, a) for a, key in _FIGURE_KEYS.items()})
        state.update({k: v for k, v in values.items() if v is not None})
        if self.phase is not Phase.UNSET:
            out["phase"] = self.phase.value
        else:
            out.pop("phase", None)
        out["migrationState"] = state
        out["phaseTransitionTimestamps"] = [
            {"phase": p.value, "phaseTransitionTimestamp": t} for p, t in self.transitions
        ]
        return out

    def phase_time(self, phase: Phase) -> str | None:
        """When the migration last entered ``phase``."""
        for p, when in reversed(self.transitions):
            if p is phase:
                return when
        return None


_STATE_KEYS = frozenset(
    {
        "sourceNode",
        "targetNode",
        "targetNodeAddress",
        "memoryBytes",
        "migrationPolicyName",
        "migrationConfiguration",
        "mode",
        "startTimestamp",
        "endTimestamp",
        "downtimeMs",
        "durationSeconds",
        "failureReason",
        "abortStatus",
        "abortRequested",
        "recoveryAddress",
        "postCopyRecoveries",
        "postCopyRecoverySpent",
        "targetLost",
        "completed",
        "failed",
        *_FIGURE_KEYS.values(),
    }
)


def _keep(old: Figures | None, new: Figures | None) -> Figures | None:
    """The newer figures unless they are QEMU's zeros after a cancel."""
    if new is None or (new.empty and old is not None):
        return old
    return new


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value) if value is not None else kind(0)
    except (TypeError, ValueError):
        return kind(0)


def transition(
    obj: dict[str, Any], step: Callable[[MigrationStatus], MigrationStatus]
) -> dict[str, Any] | None:
    """``obj`` with ``step`` applied to its status, for ``modify``; None (nothing to write) if
    the step does not apply any more or changes nothing. CancelRefused is raised."""
    current = MigrationStatus.of(obj)
    try:
        new = step(current)
    except IllegalTransition:
        return None
    if new == current:
        return None
    obj["status"] = new.to_status(obj.get("status"))
    return obj


_VIEWS: dict[tuple[Any, ...], MigrationObject] = {}
_VIEWS_KEPT = 20_000


@dataclass(frozen=True, slots=True)
class MigrationObject:
    """A migration as components see it: who it is, what it moves, where it stands."""

    namespace: str
    name: str
    vmi_name: str
    status: MigrationStatus
    priority: str | None = None
    created: str = ""
    #: The node a drain is moving this VMI off (KubeVirt's ``kubevirt.io/evacuationMigration``
    #: annotation); None for a migration a user asked for.
    evacuating: str | None = None
    #: Why it waits for a target (its Scheduled=False condition), while it does.
    unschedulable: str | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> MigrationObject:
        """The typed view of a migration object. Every pass of every component reads every
        migration, so views of stored revisions are remembered: an object the API returned
        is never changed under the same resourceVersion."""
        meta = obj.get("metadata") or {}
        revision = meta.get("resourceVersion")
        key = (meta.get("namespace"), meta.get("name"), meta.get("uid"), revision)
        if revision is not None and (seen := _VIEWS.get(key)) is not None:
            return seen
        view = cls._parse(obj, meta)
        if revision is not None:
            if len(_VIEWS) >= _VIEWS_KEPT:
                _VIEWS.clear()
            _VIEWS[key] = view
        return view

    @classmethod
    def _parse(cls, obj: Mapping[str, Any], meta: Mapping[str, Any]) -> MigrationObject:
        spec = obj.get("spec") or {}
        evacuating = (meta.get("annotations") or {}).get(EVACUATION_ANNOTATION)
        status = MigrationStatus.of(obj)
        unschedulable = None
        if status.phase is Phase.PENDING:
            for c in (obj.get("status") or {}).get("conditions") or []:
                if c.get("type") == "Scheduled" and c.get("status") == "False":
                    unschedulable = str(c.get("message") or c.get("reason") or "")
        return cls(
            str(meta.get("namespace") or "default"),
            str(meta.get("name", "")),
            str(spec.get("vmiName", "")),
            status,
            spec.get("priority"),
            str(meta.get("creationTimestamp", "")),
            str(evacuating) if evacuating else None,
            unschedulable,
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def vmi_key(self) -> tuple[str, str]:
        return (self.namespace, self.vmi_name)
