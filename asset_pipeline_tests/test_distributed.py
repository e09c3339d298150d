"""Past one machine (issue 12): the Dagster instance on Postgres, and runs whose steps execute on
dagster-celery workers that share nothing but the home and the instance.

Every server is real and its own process on 127.0.0.1 (Debian's postgresql and redis-server,
moto's S3 server); the workers have their own working folders, temp folders and DAGSTER_HOMEs.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from asset_pipeline import Catalog, Settings
from asset_pipeline.cli import INSTANCE_YAML
from asset_pipeline.identity import asset_id_for
from asset_pipeline.integrity import duplicate_ids
from asset_pipeline.lifecycle.actions import blob_report
from asset_pipeline.samples import make_samples

from .cluster import INSTANCE_YAML as DEPLOY_INSTANCE_YAML
from .cluster import Cluster, dagster_cluster
from .servers import ServerUnavailable, debian_binary, group_members, venv_script

DAY = "2026-11-20"
SUNSET = asset_id_for("research", "images/sunset")
FOREST = asset_id_for("research", "images/forest")
COPY = asset_id_for("research", "images/sunset-copy")
CHIME = asset_id_for("research", "audio/chime")
POLICIES = {"grace_period_days": 30, "preview_new_policies": False, "policies": [  # act on the first sweep
    {"name": "audio", "action": "archive", "select": {"type": "audio"}},
    {"name": "duplicates", "action": "delete", "select": {"tags": ["duplicate"]}}]}
INGEST_CHECKS = {"blobs_exist": True, "sample_rehashes": True, "no_duplicate_ids": True, "replica_in_sync": True}


def test_a_missing_server_names_its_debian_package() -> None:
    """What a newcomer without the packages sees instead of a skipped test."""
    with pytest.raises(ServerUnavailable, match=r"`redis-server-nope` not found: install the Debian package "
                                                r"`redis-server` \(as root: apt-get install -y --no-install-recommends "
                                                r"postgresql redis-server\)"):
        debian_binary("redis-server-nope", "redis-server")


def test_deploy_instance_keeps_the_run_queue_limit_of_the_embedded_one() -> None:
    deployed = yaml.safe_load(DEPLOY_INSTANCE_YAML.read_text())
    assert deployed["concurrency"] == yaml.safe_load(INSTANCE_YAML)["concurrency"]
    assert deployed["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_cli_runs_are_recorded_in_postgres(dagster_pg: dict[str, str], settings: Settings,
                                           sample_counts: dict[str, int], tmp_path: Path) -> None:
    """`asset-pipeline ingest` with DAGSTER_HOME holding deploy/dagster-postgres.yaml: the run, its
    materializations and checks land in Postgres (what the UI and the daemon read), and the
    instance enforces the exclusive-tag run-queue limit."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DEPLOY_INSTANCE_YAML.read_text())
    env = {**os.environ, **dagster_pg, "DAGSTER_HOME": str(dagster_home), "ASSET_PIPELINE_HOME": str(settings.home)}
    proc = subprocess.run([venv_script("asset-pipeline"), "ingest"], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cluster = Cluster(tmp_path, env, dagster_home)
    with cluster.instance() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
        assert [(r.job_name, r.status.value) for r in runs] == [("ingest_job", "SUCCESS")]
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert limits == [{"key": "asset_pipeline/exclusive", "value": {"applyLimitPerUniqueValue": True},
                           "limit": 1}]
    outcome = cluster.outcome_of(runs[0].run_id)
    assert outcome.metadata["asset_versions"]["new_versions"] == sample_counts["versions"]
    assert outcome.checks == INGEST_CHECKS
    assert not (settings.home / "dagster").exists()  # not the embedded SQLite instance


def _upload_tree(s3_client, local: Path, bucket: str, prefix: str) -> None:
    """A generator writing to S3: every file, sidecars last (the scan waits for them)."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: p.name.endswith(".meta.json")):
        s3_client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")


def _local_state_outside_the_home(cluster: Cluster) -> list[str]:
    """Folders named like an S3 URI under any party's working folder: a home that fell back to a
    local path (the bug this issue starts from)."""
    parties = [w.cwd for w in cluster.workers] + [cluster.launcher_home.parent]
    return [str(p) for party in parties for p in party.rglob("s3:*")]


@pytest.mark.parametrize("home_kind", ["local", "s3"])
def test_end_to_end_across_celery_workers(home_kind: str, dagster_pg: dict[str, str], redis_url: str,
                                          tmp_path: Path, request: pytest.FixtureRequest,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """ingest → embed → usage report → retention sweep, every step on one of two dagster-celery
    workers (a CPU worker on the default queue, a GPU worker on `gpu`), each with its own working
    folder, TMPDIR and DAGSTER_HOME; the instance on Postgres; the home a local folder (one host) or
    on S3 (moto's server: what several hosts share); then the single-machine invariants."""
    monkeypatch.chdir(tmp_path)  # nothing the test process opens may land in the repository
    samples = tmp_path / "samples"
    counts = make_samples(samples)
    env = {**os.environ, **dagster_pg, "ASSET_PIPELINE_CLIP_MODEL": "tiny-test"}
    if home_kind == "s3":
        s3_client, bucket = request.getfixturevalue("s3_client"), request.getfixturevalue("bucket")
        home, inbox = f"s3://{bucket}/home", f"s3://{bucket}/inbox"
        _upload_tree(s3_client, samples, bucket, "inbox")
        env = {**os.environ, **env}  # s3_env put the endpoint and keys in os.environ
    else:
        home_dir = tmp_path / "home"
        samples.rename(home_dir.parent / "inbox")
        home, inbox = str(home_dir), str(tmp_path / "inbox")
    env.update({"ASSET_PIPELINE_HOME": home, "ASSET_PIPELINE_INBOX": inbox})

    with dagster_cluster(tmp_path / "cluster", env, redis_url) as cluster:
        ingest = cluster.run("ingest_job")
        assert ingest.success, ingest.output[-6000:]
        if home_kind == "s3":
            listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="home/tables/asset_versions/_delta_log/")
            assert listed.get("KeyCount", 0) > 0, "the Delta tables are not on S3"
        assert _local_state_outside_the_home(cluster) == []
        assert ingest.metadata["asset_versions"]["new_versions"] == counts["versions"]
        assert ingest.metadata["ingest_errors"]["rejected"] == counts["rejected"]
        assert ingest.checks == INGEST_CHECKS

        embed = cluster.run("embed_job")
        assert embed.success, embed.output[-6000:]
        # The GPU step on the GPU worker; the next step, on the other worker, finds its vectors in
        # the home's LanceDB table — no object passed between them.
        assert embed.step_workers["clip_embeddings"] == cluster.worker("gpu").hostname
        assert embed.step_workers["near_duplicates"] == cluster.worker("cpu").hostname
        emb = embed.metadata["clip_embeddings"]
        assert emb["model"] == "tiny-test (test model, random weights)" and emb["device"] == "cpu"
        assert emb["rows_embedded"] == emb["table_rows"] > 0
        assert embed.metadata["near_duplicates"]["pairs"] >= 3  # the three copies of the sunset

        settings = Settings.from_env(home=home, inbox=inbox)
        cat = Catalog(settings=settings)
        for user in ("ann", "bob", "ann"):
            cat.record_usage(SUNSET, "download", user, at=datetime.fromisoformat(DAY).replace(hour=12, tzinfo=UTC))
        cat.record_usage(FOREST, "view", "bob", at=datetime.fromisoformat(DAY).replace(hour=18, tzinfo=UTC))
        assert cat.flush() == 4
        usage = cluster.run("usage_job", tags={"dagster/partition": DAY})
        assert usage.success, usage.output[-6000:]
        assert usage.metadata["daily_usage"]["events"] == 4
        assert usage.checks and all(usage.checks.values())

        sweep = cluster.run("lifecycle_job", tags={"dagster/partition": DAY},
                            run_config={"ops": {"lifecycle_actions": {"config": {"policies": POLICIES}}}})
        assert sweep.success, sweep.output[-6000:]
        assert sweep.metadata["lifecycle_actions"]["archived"] == 1
        assert sweep.metadata["lifecycle_actions"]["soft_deleted"] == 1
        assert sweep.checks == {"blob_references": True}

        runs = [ingest, embed, usage, sweep]
        workers = {w for run in runs for w in run.step_workers.values()}
        assert workers == {w.hostname for w in cluster.workers}
        for run in runs:  # every step was delegated, none ran in the launcher's process
            assert set(run.step_workers) == set(run.step_pids)
            for step, worker in run.step_workers.items():
                # each step's captured output is on the disk of the worker that ran it, nowhere else
                key = run.step_log_keys[step]
                holders = [w.hostname for w in cluster.workers
                           if list(w.dagster_home.glob(f"{run.run_id}/compute_logs/{key}.out"))]
                assert holders == [worker], (run.run_id, step, holders)
            assert not list(cluster.launcher_home.glob(f"{run.run_id}/compute_logs/*.out"))
        # and no step left an output for another: Dagster's default IO manager would have written
        # <DAGSTER_HOME>/storage/<run id>/… on the worker that produced it
        homes = [w.dagster_home for w in cluster.workers] + [cluster.launcher_home]
        assert [str(p) for h in homes for p in h.glob("storage")] == []

    for w in cluster.workers:  # TERM reached the celery child and its pool too
        assert w.leftovers == [] and group_members(w.proc.pid) == [], w.name

    # The single-machine invariants, read back from the home.
    cat = Catalog(settings=Settings.from_env(home=home, inbox=inbox))
    n = cat.sql("select (select count(*) from assets) a, (select count(*) from asset_versions) v, "
                "(select count(*) from ingest_errors) e").to_pylist()[0]
    assert n == {"a": counts["assets"], "v": counts["versions"], "e": counts["rejected"]}
    assert duplicate_ids(cat.tables).passed
    report = blob_report(cat.lifecycle())
    assert report["missing"] == [] and report["orphans"] == []
    status = {r["id"]: r["status"] for r in cat.sql("select id, status from assets").to_pylist()}
    assert status[CHIME] == "archived" and status[COPY] == "deleted" and status[SUNSET] == "active"
    daily = cat.sql(f"select action, events from daily_usage where day = '{DAY}' order by action").to_pylist()
    assert daily == [{"action": "download", "events": 3}, {"action": "view", "events": 1}]
    assert _local_state_outside_the_home(cluster) == []
