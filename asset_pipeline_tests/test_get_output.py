"""`asset-pipeline get ID -o FILE` (an exported copy) and `-o FILE --original` (the stored bytes):
never overwrites without --force, never writes through a link, and every mistake is one line on
stderr with a non-zero exit, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asset_pipeline import Catalog
from asset_pipeline.cli import main
from asset_pipeline.identity import asset_id_for

ICON = asset_id_for("research", "images/icon")


@pytest.fixture
def cli_home(ingested: Catalog, settings, monkeypatch) -> Catalog:
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(settings.home))
    return ingested


def _get(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["get", ICON, *args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, err


MODES = pytest.mark.parametrize("mode", [[], ["--original"]], ids=["export", "original"])


def test_a_new_file_is_written(cli_home: Catalog, capsys, tmp_path: Path) -> None:
    code, out, _ = _get(capsys, "-o", str(tmp_path / "icon.png"), "--original")
    assert code == 0 and "wrote" in out
    assert (tmp_path / "icon.png").read_bytes() == cli_home.get(ICON).read()
    code, out, _ = _get(capsys, "-o", str(tmp_path / "copy.png"))
    assert code == 0 and "trainedAlgorithmicMedia" in out and (tmp_path / "copy.png").stat().st_size > 0


@MODES
def test_an_existing_file_is_kept_unless_forced(cli_home: Catalog, capsys, tmp_path: Path, mode) -> None:
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "notes.txt"
    target.write_text("my notes")
    code, _, err = _get(capsys, "-o", str(target), *mode)
    _one_line_error(code, err, str(target), "exists", "--force")
    assert target.read_text() == "my notes"
    code, _, _ = _get(capsys, "-o", str(target), "--force", *mode)
    assert code == 0 and target.read_text(errors="replace") != "my notes"
    if mode:
        assert target.read_bytes() == cli_home.get(ICON).read()
    assert [p.name for p in target.parent.iterdir()] == ["notes.txt"]  # no temp file left behind


@MODES
@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "forced"])
def test_a_symbolic_link_is_never_written_through(cli_home: Catalog, capsys, tmp_path: Path, force, mode) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("do not touch")
    link = tmp_path / "out.png"
    link.symlink_to(precious)
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "would-be-created.png")
    for target in (link, dangling):
        code, _, err = _get(capsys, "-o", str(target), *force, *mode)
        _one_line_error(code, err, str(target), "symbolic link")
    assert precious.read_text() == "do not touch" and not (tmp_path / "would-be-created.png").exists()
    assert link.is_symlink() and dangling.is_symlink()


@MODES
@pytest.mark.parametrize("case", ["folder", "missing-folder", "file-as-folder"])
def test_a_bad_target_is_one_clear_line(cli_home: Catalog, capsys, tmp_path: Path, case: str, mode) -> None:
    (tmp_path / "a-file").write_text("x")
    target, words = {"folder": (tmp_path, "is a folder"),
                     "missing-folder": (tmp_path / "nope" / "icon.png", "does not exist"),
                     "file-as-folder": (tmp_path / "a-file" / "icon.png", "not a folder")}[case]
    code, _, err = _get(capsys, "-o", str(target), "--force", *mode)
    _one_line_error(code, err, str(target), words)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_device_is_one_clear_line(cli_home: Catalog, capsys) -> None:
    code, _, err = _get(capsys, "-o", "/dev/full")
    _one_line_error(code, err, "/dev/full", "exists")
    code, _, err = _get(capsys, "-o", "/dev/full", "--force")  # an export is a new file: never renamed over a device
    _one_line_error(code, err, "/dev/full", "not a regular file")
    assert Path("/dev/full").is_char_device()
    code, _, err = _get(capsys, "-o", "/dev/full", "--force", "--original")
    _one_line_error(code, err, "/dev/full", "No space left on device")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_the_console_script_prints_no_traceback(cli_home: Catalog, settings, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "asset-pipeline"
    env = {**os.environ, "ASSET_PIPELINE_HOME": str(settings.home), "DAGSTER_HOME": ""}
    env.pop("DAGSTER_HOME")
    for target in ("/dev/full", str(tmp_path)):
        proc = subprocess.run([str(script), "get", ICON, "-o", target, "--force", "--original"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and target in proc.stderr


def test_an_exports_xmp_sidecar_is_never_written_through_a_link(cli_home: Catalog, capsys, tmp_path: Path) -> None:
    """A WAV's export carries its XMP beside it (`<file>.xmp`): that file follows the same rules."""
    chime = asset_id_for("research", "audio/chime")
    precious = tmp_path / "precious.txt"
    precious.write_text("do not touch")
    (tmp_path / "chime.wav.xmp").symlink_to(precious)
    code = main(["get", chime, "-o", str(tmp_path / "chime.wav"), "--force"])
    _, err = capsys.readouterr()
    _one_line_error(code, err, "chime.wav.xmp", "symbolic link")
    assert precious.read_text() == "do not touch" and not (tmp_path / "chime.wav").exists()
    (tmp_path / "chime.wav.xmp").unlink()
    assert main(["get", chime, "-o", str(tmp_path / "chime.wav")]) == 0
    assert (tmp_path / "chime.wav.xmp").is_file() and not (tmp_path / "chime.wav.xmp").is_symlink()
