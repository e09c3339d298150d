import io
import json
import os
import subprocess
import sys
from pathlib import Path

from asset_pipeline.cli import main
from asset_pipeline.progress import ProgressLine, human_bytes


def test_progress_line_shows_files_bytes_and_rate() -> None:
    out = io.StringIO()
    line = ProgressLine(total_files=3, total_bytes=3_000_000, stream=out)
    line(1, 1_000_000)
    line(3, 3_000_000)
    text = out.getvalue()
    assert "3/3 files" in text and "3.0 MB/3.0 MB" in text and "B/s" in text and text.endswith("\n")
    assert human_bytes(1536) == "1.5 KB" and human_bytes(12) == "12 B"


def test_cli_ingest_sql_versions_get(tmp_path: Path, monkeypatch, capsys) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert main(["make-samples", str(tmp_path / "elsewhere")]) == 0
    assert main(["ingest", str(tmp_path / "elsewhere")]) == 0
    summary = capsys.readouterr().out
    assert "ingested 14 versions (13 new assets)" in summary and "4 rejected" in summary
    assert "blobs_exist passed" in summary
    assert main(["sql", "select id from assets where name = 'images/hero'", "--json"]) == 0
    hero = json.loads(capsys.readouterr().out)[0]["id"]
    assert main(["versions", hero]) == 0
    assert "brighter colours" in capsys.readouterr().out
    # -o writes a copy that declares itself AI-generated (issue 14); --original the stored bytes
    assert main(["get", hero, "--version", "1", "-o", str(tmp_path / "v1.png"), "--original"]) == 0
    assert (tmp_path / "v1.png").read_bytes() == (tmp_path / "elsewhere" / "images/hero.png").read_bytes()
    assert main(["get", "no-such-asset"]) == 2
    assert "no asset with id 'no-such-asset'" in capsys.readouterr().err


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
