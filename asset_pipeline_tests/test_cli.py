import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from asset_pipeline.cli import main
from asset_pipeline.progress import ProgressLine, human_bytes
from asset_pipeline.samples import make_samples


def test_progress_line_shows_files_bytes_and_rate() -> None:
    out = io.StringIO()
    line = ProgressLine(total_files=3, total_bytes=3_000_000, stream=out)
    line(1, 1_000_000)
    line(3, 3_000_000)
    text = out.getvalue()
    assert "3/3 files" in text and "3.0 MB/3.0 MB" in text and "B/s" in text and text.endswith("\n")
    assert human_bytes(1536) == "1.5 KB" and human_bytes(12) == "12 B"


def test_init_makes_the_dagster_storage_so_first_runs_can_start_together(tmp_path: Path, monkeypatch) -> None:
    """`dagster asset materialize` creates the instance's SQLite storage without the CLI's lock:
    on a new DAGSTER_HOME, it and a CLI ingest started together could both create the same tables
    ("table secondary_indexes already exists", the Dagster run failing). After `init` the storage
    exists, with every table, so neither creates anything."""
    import sqlite3

    dh = tmp_path / "dh"
    dh.mkdir()
    (dh / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(dh))
    assert main(["init"]) == 0
    for db, table in (("history/runs.db", "runs"), ("history/runs.db", "secondary_indexes"),
                      ("history/runs/index.db", "event_logs"), ("schedules/schedules.db", "jobs")):
        with sqlite3.connect(dh / db) as con:
            assert con.execute("select count(*) from sqlite_master where name = ?", [table]).fetchone() == (1,), db
    monkeypatch.delenv("DAGSTER_HOME")  # without one, the instance lives in the home
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(tmp_path / "home2"))
    assert main(["init"]) == 0
    assert (tmp_path / "home2" / "dagster" / "history" / "runs.db").is_file()


def test_cli_ingest_sql_versions_get(tmp_path: Path, monkeypatch, capsys) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert main(["make-samples", str(tmp_path / "elsewhere")]) == 0
    hero_v1 = (tmp_path / "elsewhere" / "images/hero.png").read_bytes()
    assert main(["init"]) == 0
    assert main(["ingest", str(tmp_path / "elsewhere")]) == 0
    summary = capsys.readouterr().out
    assert "ingested 14 versions (13 new assets)" in summary and "4 rejected" in summary
    assert "blobs_exist passed" in summary
    assert main(["sql", "select id from assets where name = 'images/hero'", "--json"]) == 0
    hero = json.loads(capsys.readouterr().out)[0]["id"]
    assert main(["versions", hero]) == 0
    assert "brighter colours" in capsys.readouterr().out
    assert main(["get", hero]) == 0 and json.loads(capsys.readouterr().out)["version"] == 2  # metadata only
    # -o writes a copy that declares itself AI-generated (issue 14); --original the stored bytes
    assert main(["get", hero, "--version", "1", "-o", str(tmp_path / "v1.png"), "--original"]) == 0
    assert (tmp_path / "v1.png").read_bytes() == hero_v1
    from asset_pipeline import Catalog

    downloads = Catalog(home).sql("select version from usage_events where action = 'download'").to_pylist()
    assert downloads == [{"version": 1}]  # the bytes written count; printing metadata does not
    assert main(["get", "no-such-asset"]) == 2
    assert "no asset with id 'no-such-asset'" in capsys.readouterr().err


def test_an_ingest_of_an_empty_inbox_loads_only_what_its_step_uses(ingested, settings) -> None:
    """A run's fixed cost is mostly imports: an ingest of an empty inbox on a home with content,
    its checks included, loads none of `HEAVY_MODULES` (test_s3_home: the same on S3)."""
    from .conftest import cli_in_new_interpreter

    output, loaded = cli_in_new_interpreter(["ingest"], {"ASSET_PIPELINE_HOME": str(settings.home)})
    assert "status 0" in output, output
    assert "ingested 0 versions (0 new assets) from 0 inputs" in output
    assert "blobs_exist passed" in output and "no_duplicate_ids passed" in output
    assert loaded == [], output


def test_a_rescan_of_an_unchanged_kept_inbox_loads_only_what_its_step_uses(tmp_path: Path) -> None:
    """A watch folder (keep mode) is re-scanned on every sensor tick: when nothing in it changed,
    the run reads the paths' versions and the hash cache, opens no input (not even its rejects)
    and loads none of `HEAVY_MODULES` — not Pillow, not pandas either, which DuckDB loads to bind
    a list of paths."""
    from .conftest import cli_in_new_interpreter

    env = {"ASSET_PIPELINE_HOME": str(tmp_path / "home"), "ASSET_PIPELINE_INBOX": str(tmp_path / "watched"),
           "ASSET_PIPELINE_INBOX_MODE": "keep", "DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "home").mkdir()
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    make_samples(tmp_path / "watched")
    first, _ = cli_in_new_interpreter(["ingest"], env)
    assert "status 0" in first and "ingested 14 versions" in first, first
    output, loaded = cli_in_new_interpreter(["ingest"], env)
    assert "status 0" in output, output
    assert "ingested 0 versions (0 new assets) from 18 inputs" in output, output
    assert "read 0 of 18 inputs (the rest from the hash cache)" in output, output
    assert "4 rejected (left in the inbox)" in output, output  # still shown, on the cache's word
    assert loaded == [], output


def test_ingest_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    """Run the console script under a pseudo-terminal, as a person would."""
    import pty

    env = {**os.environ, "ASSET_PIPELINE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dh")}
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    script = Path(sys.executable).parent / "asset-pipeline"
    subprocess.run([str(script), "make-samples", str(tmp_path / "home" / "inbox")], check=True, env=env,
                   capture_output=True)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(script), "ingest"], env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "ingest: 18/18 files" in screen and "/s" in screen
    assert "ingested 14 versions" in screen


def _cli(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    """Exit status, stdout lines and stderr lines of one in-process CLI call (as a user sees them)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own exits (--help, --version, usage errors)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def _one_line_error(capsys, *argv: str, says: str, code: int = 2) -> None:
    status, _, err = _cli(capsys, *argv)
    assert status == code and len(err) == 1 and says in err[0] and "Traceback" not in err[0], (argv, status, err)


def test_user_errors_are_one_line_and_a_non_zero_exit(ingested, settings, monkeypatch, capsys,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(settings.home))
    a_file = tmp_path / "sunset.png"  # (the ingest consumed the inbox's own files)
    a_file.write_bytes(b"not a folder")
    _one_line_error(capsys, "ingest", "/no/such/dir", says="no folder /no/such/dir")
    _one_line_error(capsys, "ingest", str(a_file), says="is a file; ingest takes a folder")
    _one_line_error(capsys, "sql", "select nope from assets", says='Binder Error: Referenced column "nope"')
    _one_line_error(capsys, "sql", "selec 1", says="Parser Error")
    _one_line_error(capsys, "report", "--day", "yesterday", says="'yesterday' is not a date (YYYY-MM-DD)")
    _one_line_error(capsys, "search", "--image", "missing.png", says="no embeddings for model")
    _one_line_error(capsys, "search", "--query", "rocket", says="no embeddings for model ViT-B-32:laion2b_s34b_b79k")
    _one_line_error(capsys, "get", "research/images/nope", says="no asset with id or project/name")
    _one_line_error(capsys, "versions", "a_nope", says="no asset with id 'a_nope'")
    _one_line_error(capsys, "collection", "share", "c_x", "bob", "owner", says="invalid choice: 'owner'")
    # a home without an inbox, and a mistyped home that must not quietly become a new one
    bare = tmp_path / "bare"
    bare.mkdir()
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(bare))
    _one_line_error(capsys, "ingest", says=f"the inbox {bare / 'inbox'} does not exist")
    typo = tmp_path / "dtaa"
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(typo))
    for argv in (["sql", "select 1"], ["ingest"], ["search", "--query", "x"], ["embed"], ["report"]):
        _one_line_error(capsys, *argv, says=f"no home at {typo}")
    assert not typo.exists()


def test_lifecycle_collections_and_versions_from_the_command_line(ingested, settings, monkeypatch, capsys,
                                                                  tmp_path: Path) -> None:
    from asset_pipeline.samples import render_image

    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(settings.home))
    assert _cli(capsys, "archive", "research/images/forest", "--user", "ann")[:2] == (
        0, ["archived a_" + ingested.asset("research/images/forest")["id"][2:] + " (research/images/forest); "
            "status: archived"])
    _one_line_error(capsys, "get", "research/images/forest", says="is archived; restore it with")
    assert _cli(capsys, "restore", "research/images/forest")[0] == 0
    assert _cli(capsys, "delete", "research/images/forest")[1][0].endswith("status: deleted")
    assert _cli(capsys, "undelete", "research/images/forest")[1][0].endswith("status: active")
    audit = ingested.sql('select action, "by" from lifecycle_actions where version = 1 order by acted_at').to_pylist()
    assert [r["action"] for r in audit] == ["archive", "restore", "delete", "undelete"] and audit[0]["by"] == "ann"

    edited = tmp_path / "edited.png"
    edited.write_bytes(render_image(77, (32, 32)))
    code, out, _ = _cli(capsys, "create-version", "research/images/icon", str(edited), "-m", "fixed the sky")
    assert code == 0 and "is at v2" in out[0] and "fixed the sky" in out[0]
    assert _cli(capsys, "revert", "research/images/icon", "1")[1][0].endswith(
        "is at v3: revert to v1 (" + ingested.get_version("research/images/icon", 1)["sha256"][:12] + ")")

    code, out, _ = _cli(capsys, "collection", "create", "launch banners", "--user", "alice")
    cid = out[0]
    assert code == 0 and cid.startswith("c_")
    assert _cli(capsys, "collection", "add", cid, "research/images/sunset", "--user", "alice")[0] == 0
    assert _cli(capsys, "collection", "share", cid, "bob", "view", "--user", "alice")[1] == [f"bob has view on {cid}"]
    code, out, _ = _cli(capsys, "collections", "list", "--user", "bob")
    assert code == 0 and out[0].startswith(f"{cid}  view ") and out[-1] == "(1 collections visible to bob)"
    code, out, _ = _cli(capsys, "collection", "list", cid, "--user", "bob")
    assert "research/images/sunset" in out[0] and out[-1] == "(1 assets)"
    _one_line_error(capsys, "collection", "add", cid, "research/images/icon", "--user", "bob",
                    says="'bob' cannot add assets to collection 'launch banners'")
    assert _cli(capsys, "collection", "unshare", cid, "bob", "--user", "alice")[0] == 0
    assert _cli(capsys, "collection", "remove", cid, "research/images/sunset", "--user", "alice")[0] == 0
    assert ingested.collection_assets(cid, "alice") == []


def test_version_flag_and_help_on_every_argument(capsys) -> None:
    from asset_pipeline import __version__
    from asset_pipeline.cli import _build_parser

    assert _cli(capsys, "--version")[:2] == (0, [f"asset-pipeline {__version__}"])
    missing = []

    def walk(parser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{path} {choice.dest}")
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(_build_parser(), "asset-pipeline")
    assert missing == []


def test_verbose_shows_dagster_and_dbt_output(ingested, settings, monkeypatch, capsys) -> None:
    """Quiet by default (the docs test holds every command to its summary); -v shows the rest."""
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(settings.home))
    code, out, err = _cli(capsys, "-v", "report", "--day", "2026-11-24")
    assert code == 0 and out[-1].startswith("usage: ") and "dbt tests 20/20 passed" in out[-1]
    assert any("PASS not_null_daily_usage_day" in line for line in out)  # dbt's own progress
    assert any(" - dagster - INFO - usage_job - " in line and "Running dbt command" in line for line in err)


def test_the_command_ends_with_its_own_exit_status_and_all_its_output(tmp_path: Path) -> None:
    """The installed `asset-pipeline` skips the collector's last pass as it exits: what the
    command printed still arrives whole, and its status is the command's own."""
    command = str(Path(sys.executable).parent / "asset-pipeline")
    env = {**os.environ, "ASSET_PIPELINE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": ""}
    make_samples(tmp_path / "inbox")
    subprocess.run([command, "init"], env=env, check=True, capture_output=True, timeout=120)
    done = subprocess.run([command, "ingest", str(tmp_path / "inbox")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ingested 14 versions (13 new assets)") and "; run " in done.stdout.splitlines()[-1]
    missing = subprocess.run([command, "ingest", str(tmp_path / "nowhere")], env=env, capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode != 0 and "nowhere" in missing.stderr and not missing.stdout


def test_the_command_succeeds_when_started_without_a_stdout(tmp_path: Path) -> None:
    """Cron and daemon launchers may start a command with its stdout closed (`cmd >&-`): Python
    then has no sys.stdout, and a command that did its work must still exit 0."""
    command = str(Path(sys.executable).parent / "asset-pipeline")
    env = {**os.environ, "ASSET_PIPELINE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": ""}
    done = subprocess.run([command, "init"], env=env, stderr=subprocess.PIPE, text=True, timeout=300,
                          preexec_fn=lambda: os.close(1))
    assert done.returncode == 0, done.stderr
    assert not done.stderr and (tmp_path / "home" / "dagster").is_dir()
