"""The test cluster is a real one: every slot served, one attached replica per primary."""

from __future__ import annotations

import os

from gatekeeper.store.localcluster import SLOTS, LocalCluster, LocalClusterError


def _info(cluster: LocalCluster, port: int, section: str) -> dict[str, str]:
    with cluster.client(port) as c:
        raw = c.execute_command("CLUSTER", "INFO") if section == "cluster" else None
        text = raw.decode() if isinstance(raw, bytes) else None
        if text is None:
            return {k: str(v) for k, v in c.info(section).items()}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def test_every_slot_is_served_by_one_of_three_primaries(redis_cluster: LocalCluster) -> None:
    owners = redis_cluster.slot_owners()
    assert len(owners) == SLOTS
    assert set(owners.values()) == set(redis_cluster.primary_ports)
    assert len(redis_cluster.primary_ports) == 3
    for port in redis_cluster.ports:
        info = _info(redis_cluster, port, "cluster")
        assert info["cluster_state"].strip() == "ok"
        assert info["cluster_slots_assigned"].strip() == str(SLOTS)
        assert info["cluster_known_nodes"].strip() == "6"


def test_each_primary_has_one_attached_replica(redis_cluster: LocalCluster) -> None:
    primaries = set(redis_cluster.primary_ports)
    masters = set()
    for port in redis_cluster.replica_ports:
        info = _info(redis_cluster, port, "replication")
        assert info["role"] == "slave"
        assert info["master_link_status"] == "up"
        masters.add(int(info["master_port"]))
    assert masters == primaries
    for port in redis_cluster.primary_ports:
        assert _info(redis_cluster, port, "replication")["connected_slaves"] == "1"


def test_a_failed_start_leaves_no_process_behind() -> None:
    cluster = LocalCluster(primaries=1, replicas_per_primary=1)
    started: list[int] = []
    original = cluster._form

    def fail(deadline: float) -> None:
        started.extend(cluster.pids)
        raise LocalClusterError("injected")

    cluster._form = fail  # type: ignore[method-assign]
    try:
        cluster.start(timeout_s=10)
    except LocalClusterError:
        pass
    else:  # pragma: no cover
        raise AssertionError("start() did not fail")
    assert original is not None and len(started) == 2
    for pid in started:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"redis-server {pid} still running")
    assert cluster.ports == []
