"""Scale benchmark for the lint/explain face.

Generates one `oc get ... -A -o yaml`-style dump (a kind: List) of VMIs, namespaces and
MigrationPolicies, then times, in this process:
  (a) loading + validating the YAML (livemig.api.loading.load_paths), and
  (b) resolving every VMI: winning policy + effective configuration (what `explain` does).
Prints one JSON line per figure. Targets (2 cores): (b) < 2 s, (a) < 30 s, peak RSS < 2 GiB.

    python bench/explain_scale.py [--vmis 100000] [--namespaces 2000] [--policies 500]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import tempfile
import time
from pathlib import Path

from livemig.api.loading import load_paths
from livemig.inventory import Inventory
from livemig.policy import Precedence
from report import emitter  # bench/report.py, beside this script

emit = emitter("explain_scale")
TEAMS = 40
APPS = 60
HEADER = 'apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: ""\nitems:\n'

HCO = """\
- apiVersion: hco.kubevirt.io/v1beta1
  kind: HyperConverged
  metadata:
    name: kubevirt-hyperconverged
    namespace: openshift-cnv
    uid: 6b0e4a53-5f8e-4b8e-9c3c-8f7d3c2f1a10
  spec:
    liveMigrationConfig:
      bandwidthPerMigration: 64Mi
      completionTimeoutPerGiB: 800
      parallelMigrationsPerCluster: 5
      parallelOutboundMigrationsPerNode: 2
      progressTimeout: 150
"""

NAMESPACE = """\
- apiVersion: v1
  kind: Namespace
  metadata:
    labels:
      kubernetes.io/metadata.name: {name}
      team: team-{team}
      tier: {tier}
    name: {name}
    resourceVersion: "{rv}"
    uid: 5a1c2d3e-0000-4000-8000-{rv:012d}
  status:
    phase: Active
"""

VMI = """\
- apiVersion: kubevirt.io/v1
  kind: VirtualMachineInstance
  metadata:
    creationTimestamp: "2026-06-01T08:00:05Z"
    labels:
      app: app-{app}
      env: {env}
      kubevirt.io/domain: {name}
      kubevirt.io/size: {size}
    name: {name}
    namespace: {ns}
    resourceVersion: "{rv}"
    uid: 7c3d0000-0000-4000-8000-{rv:012d}
  spec:
    domain:
      cpu:
        cores: 2
      devices:
        disks:
        - disk:
            bus: virtio
          name: rootdisk
        interfaces:
        - masquerade: {{}}
          name: default
      memory:
        guest: {mem}Gi
      resources:
        requests:
          memory: {mem}Gi
    evictionStrategy: LiveMigrate
    networks:
    - name: default
      pod: {{}}
    volumes:
    - dataVolume:
        name: {name}-root
      name: rootdisk
  status:
    nodeName: worker-{node}
    phase: Running
"""

POLICY = """\
- apiVersion: migrations.kubevirt.io/v1alpha1
  kind: MigrationPolicy
  metadata:
    name: policy-{i:03d}
  spec:
    bandwidthPerMigration: {bw}Mi
    completionTimeoutPerGiB: {ct}
    allowPostCopy: {pc}
    selectors:
      namespaceSelector: {ns_sel}
      virtualMachineInstanceSelector: {vmi_sel}
"""


def generate(path: Path, vmis: int, namespaces: int, policies: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    parts = [HEADER, HCO]
    ns_names = [f"ns-{i:04d}" for i in range(namespaces)]
    for i, name in enumerate(ns_names):
        tier = ("gold", "silver", "bronze")[i % 3]
        parts.append(NAMESPACE.format(name=name, team=i % TEAMS, tier=tier, rv=i + 1))
    for i in range(policies):
        ns_sel: dict[str, str] = {}
        vmi_sel: dict[str, str] = {}
        shape = i % 5
        if shape in (0, 3):
            ns_sel["team"] = f"team-{rng.randrange(TEAMS)}"
        if shape in (1, 3, 4):
            vmi_sel["app"] = f"app-{rng.randrange(APPS)}"
        if shape in (2, 4):
            vmi_sel["env"] = rng.choice(["prod", "staging", "dev"])
            ns_sel["tier"] = rng.choice(["gold", "silver", "bronze"])
        parts.append(
            POLICY.format(
                i=i,
                bw=rng.choice([32, 64, 128, 256]),
                ct=rng.choice([150, 300, 800]),
                pc=str(rng.random() < 0.2).lower(),
                ns_sel=json.dumps(ns_sel),
                vmi_sel=json.dumps(vmi_sel),
            )
        )
    for i in range(vmis):
        parts.append(
            VMI.format(
                name=f"vm-{i:06d}",
                ns=ns_names[i % namespaces],
                app=rng.randrange(APPS),
                env=rng.choice(["prod", "staging", "dev"]),
                size=rng.choice(["small", "medium", "large"]),
                mem=rng.choice([2, 4, 8, 16]),
                rv=100000 + i,
                node=i % 50,
            )
        )
    text = "".join(parts)
    path.write_text(text)
    return len(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--vmis", type=int, default=100_000)
    ap.add_argument("--namespaces", type=int, default=2_000)
    ap.add_argument("--policies", type=int, default=500)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "cluster-dump.yaml"
        size = generate(dump, args.vmis, args.namespaces, args.policies)
        emit("dump_size", round(size / 2**20, 1), "MiB")
        emit("objects", args.vmis + args.namespaces + args.policies + 1, "count")

        gc.collect()
        t0 = time.perf_counter()
        loaded = load_paths([str(dump)])
        t_load = time.perf_counter() - t0
    emit("load_and_validate", round(t_load, 2), "s", "< 30")

    t0 = time.perf_counter()
    inv = Inventory.from_objects(o.obj for o in loaded.objects)
    resolved = inv.resolve_all(inv.workloads, Precedence.DOCUMENTED)
    configs = [inv.configuration(res) for _, res in resolved]
    t_resolve = time.perf_counter() - t0
    with_policy = sum(1 for _, res in resolved if res.winner)
    emit("resolve_all_vmis", round(t_resolve, 2), "s", "< 2")
    emit("vmis_resolved", len(configs), "count")
    emit("vmis_with_a_policy", with_policy, "count")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    emit("peak_rss", round(peak, 2), "GiB", "< 2")


if __name__ == "__main__":
    main()
