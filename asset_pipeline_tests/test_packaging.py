"""The package as a user installs it: a non-editable wheel, outside the repository."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from asset_pipeline import Catalog

from .conftest import REPO


def test_the_wheel_ships_the_dbt_project_and_usage_reports_build_from_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "asset_pipeline", src / "asset_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__", "target", "logs"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("asset_pipeline-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    installed = site / "asset_pipeline" / "dbt_usage"
    shipped = sorted(str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file())
    assert "dbt_project.yml" in shipped and "profiles.yml" in shipped and "models/daily_usage.sql" in shipped

    Catalog(tmp_path / "home")  # an empty home
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ASSET_PIPELINE_DBT_PROJECT")}
    env.update(PYTHONPATH=str(site), ASSET_PIPELINE_HOME=str(tmp_path / "home"))
    code = ("import sys, asset_pipeline\n"
            "print(asset_pipeline.__file__)\n"
            "from asset_pipeline.cli import main\n"
            "sys.exit(main(['report', '--day', '2026-11-24']))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(site / "asset_pipeline" / "__init__.py")  # the installed copy, not the checkout
    assert "reports for 2026-11-24" in lines[1] and "dbt tests 20/20 passed" in lines[1]
    # dbt wrote its manifest, logs and run artifacts elsewhere: nothing new inside the package
    assert sorted(str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file()) == shipped
    assert not (REPO / "dbt_usage" / "target").exists() and not (REPO / "dbt_usage" / "logs").exists()
