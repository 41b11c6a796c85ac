"""start_cluster: real LocalClusters of worker processes, their housekeeping settings."""

import dask
import pytest

from magtrack_dask.cluster import BATCH_CONFIG, batch_settings, start_cluster

distributed = pytest.importorskip("distributed")

PROFILE = "distributed.worker.profile.enabled"
TICK = "distributed.admin.tick.interval"
MEMORY = "distributed.worker.memory.monitor-interval"


def _intervals_ms(server) -> dict:
    """The periodic callbacks' intervals of a scheduler or worker, in ms (None: not run)."""
    callbacks = server.periodic_callbacks
    return {name: (callbacks[name].callback_time if name in callbacks else None)
            for name in ("tick", "monitor", "profile", "stealing")}


def _worker_intervals(dask_worker):
    return {**_intervals_ms(dask_worker), "memory": 1000 * dask_worker.memory_manager.memory_monitor_interval}


def _scheduler_intervals(dask_scheduler):
    return _intervals_ms(dask_scheduler)


def test_batch_settings_keep_what_the_user_set():
    assert batch_settings() == BATCH_CONFIG  # the test session leaves distributed's defaults
    with dask.config.set({TICK: "50ms", PROFILE: False}):
        settings = batch_settings()
    assert TICK not in settings and PROFILE not in settings  # set by the user: theirs stay
    assert settings == {k: v for k, v in BATCH_CONFIG.items() if k not in (TICK, PROFILE)}


def test_started_cluster_runs_with_batch_settings_and_keeps_the_users():
    with dask.config.set({TICK: "50ms"}):  # the user's own choice for one key
        client = start_cluster(1, dashboard_address=":0")
        try:
            client.cluster.scale(2)  # a nanny added after the start gets them too
            client.wait_for_workers(2, timeout=60)
            workers = client.run(_worker_intervals)
            assert len(workers) == 2
            for intervals in workers.values():
                assert intervals == {"tick": 50, "monitor": 2000, "profile": None, "stealing": None, "memory": 500}
            assert client.run_on_scheduler(_scheduler_intervals) == {
                "tick": 50, "monitor": 2000, "profile": None, "stealing": 1000}
            assert sorted(client.nthreads().values()) == [1, 1]
        finally:
            client.close()
            client.cluster.close()
    assert dask.config.get(PROFILE) is True  # this process's config is as it was


def test_batch_config_false_keeps_dask_defaults():
    client = start_cluster(1, batch_config=False, dashboard_address=":0")
    try:
        (intervals,) = client.run(_worker_intervals).values()
        assert intervals == {"tick": 20, "monitor": 500, "profile": 10, "stealing": None, "memory": 100}
        assert client.run_on_scheduler(_scheduler_intervals) == {
            "tick": 20, "monitor": 500, "profile": None, "stealing": 1000}
    finally:
        client.close()
        client.cluster.close()
