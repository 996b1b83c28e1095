"""`apply` merges as `kubectl apply` does: set what is given, remove what was given last time
and is gone now, keep everything else (and never the status or server-set metadata)."""

from __future__ import annotations

import json
from typing import Any

from livemig.api.apply import LAST_APPLIED, Verb, to_create, to_update
from livemig.api.builders import hyperconverged


def node(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "spec": spec}


def stored(obj: dict[str, Any], **more: Any) -> dict[str, Any]:
    """What the server holds after creating ``obj`` (plus what others wrote since)."""
    out = to_create(obj)
    out["metadata"].update(uid="u-1", resourceVersion="7", creationTimestamp="2026-11-29T00:00:00Z")
    for key, value in more.items():
        out[key] = value
    return out


hco = hyperconverged


def test_cordoning_a_node_by_apply_keeps_the_labels_its_agent_set() -> None:
    current = stored(node(), status={"conditions": [{"type": "Ready", "status": "True"}]})
    current["metadata"]["labels"] = {"kubernetes.io/hostname": "node-1"}
    merged, verb = to_update(current, node(unschedulable=True))
    assert verb is Verb.CONFIGURED
    assert merged["spec"] == {"unschedulable": True}
    assert merged["metadata"]["labels"] == {"kubernetes.io/hostname": "node-1"}
    assert merged["metadata"]["resourceVersion"] == "7"
    assert merged["status"] == current["status"]


def test_a_setting_removed_from_the_file_is_removed_so_its_default_returns() -> None:
    current = stored(hco(completionTimeoutPerGiB=800, bandwidthPerMigration="64Mi"))
    merged, verb = to_update(current, hco(bandwidthPerMigration="64Mi"))
    assert verb is Verb.CONFIGURED
    assert merged["spec"]["liveMigrationConfig"] == {"bandwidthPerMigration": "64Mi"}
    last = json.loads(merged["metadata"]["annotations"][LAST_APPLIED])
    assert last["spec"]["liveMigrationConfig"] == {"bandwidthPerMigration": "64Mi"}


def test_fields_someone_else_wrote_stay() -> None:
    current = stored(hco(bandwidthPerMigration="64Mi"))
    current["spec"]["featureGates"] = {"x": True}  # the operator's, never applied by the user
    current["spec"]["liveMigrationConfig"]["network"] = "migration-net"  # set by another tool
    merged, _ = to_update(current, hco(bandwidthPerMigration="128Mi"))
    assert merged["spec"]["featureGates"] == {"x": True}
    assert merged["spec"]["liveMigrationConfig"] == {
        "bandwidthPerMigration": "128Mi",
        "network": "migration-net",
    }


def test_applying_the_same_file_again_is_unchanged() -> None:
    obj = hco(progressTimeout=150)
    _, verb = to_update(stored(obj), obj)
    assert verb is Verb.UNCHANGED


def test_a_dump_applies_without_its_status_or_server_metadata() -> None:
    dumped = hco(progressTimeout=150)
    dumped["metadata"].update(
        uid="other-cluster",
        resourceVersion="999",
        creationTimestamp="2000-01-01T00:00:00Z",
        generation=4,
        managedFields=[{"manager": "kubectl"}],
        annotations={LAST_APPLIED: '{"stale": true}', "team": "virt"},
    )
    dumped["status"] = {"conditions": []}
    created = to_create(dumped)
    assert "status" not in created
    assert not {"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"} & set(
        created["metadata"]
    )
    assert created["metadata"]["annotations"]["team"] == "virt"
    last = json.loads(created["metadata"]["annotations"][LAST_APPLIED])
    assert "stale" not in last and last["metadata"]["annotations"] == {"team": "virt"}
    merged, verb = to_update(stored(hco(progressTimeout=150)), dumped)
    assert merged["metadata"]["uid"] == "u-1" and merged["metadata"]["resourceVersion"] == "7"
    assert verb is Verb.CONFIGURED  # only the new annotation
