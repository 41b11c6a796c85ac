"""start_cluster, connect, close_client: real LocalClusters of worker processes, their housekeeping settings."""

import dask
import pytest

from magtrack_dask.cluster import BATCH_CONFIG, batch_settings, close_client, connect, start_cluster
from magtrack_dask.validation import InputError

from tests.conftest import periodic_intervals_ms, worker_intervals

distributed = pytest.importorskip("distributed")

PROFILE = "distributed.worker.profile.enabled"
TICK = "distributed.admin.tick.interval"
MEMORY = "distributed.worker.memory.monitor-interval"


def _scheduler_intervals(dask_scheduler):
    return periodic_intervals_ms(dask_scheduler)


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
            workers = client.run(worker_intervals)
            assert len(workers) == 2
            for intervals in workers.values():
                assert intervals == {"tick": 50, "monitor": 2000, "profile": None, "stealing": None, "memory": 500}
            assert client.run_on_scheduler(_scheduler_intervals) == {
                "tick": 50, "monitor": 2000, "profile": None, "stealing": 1000}
            assert sorted(client.nthreads().values()) == [1, 1]
        finally:
            close_client(client)
    assert dask.config.get(PROFILE) is True  # this process's config is as it was


def test_batch_config_false_keeps_dask_defaults():
    client = start_cluster(1, batch_config=False, dashboard_address=":0")
    try:
        (intervals,) = client.run(worker_intervals).values()
        assert intervals == {"tick": 20, "monitor": 500, "profile": 10, "stealing": None, "memory": 100}
        assert client.run_on_scheduler(_scheduler_intervals) == {
            "tick": 20, "monitor": 500, "profile": None, "stealing": 1000}
    finally:
        cluster = client.cluster
        close_client(client)
    assert client.status == "closed" and cluster.status.name == "closed"  # the cluster it started, too


def test_connect_and_close_client_leave_the_scheduler_running(client):
    other = connect(client.scheduler.address)
    assert other.submit(sum, [1, 2]).result() == 3
    close_client(other)  # a connected client: the cluster is not its to close
    assert other.status == "closed"
    assert client.submit(sum, [3, 4]).result() == 7


def test_unreachable_scheduler_is_an_input_error():
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(InputError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
            connect("tcp://127.0.0.1:9")
        with pytest.raises(InputError, match="cannot reach"):
            start_cluster(scheduler_address="tcp://127.0.0.1:9")
