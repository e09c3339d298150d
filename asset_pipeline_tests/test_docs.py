"""The README and docs, run as written: the quick start in a fresh home, then every shell command,
Python snippet, SQL query and config example they show, and the search notebook — with no extra
environment. The commands are read from the markdown, so the docs and this test cannot drift.

What is substituted, and why: the quick start's venv creation and `pip install` (this suite runs in
an installed environment already), `pytest` itself, and a free port for `dagster dev` (a server:
it is started, asked over GraphQL whether the code location loaded, and stopped). Everything runs
in a "fresh clone": the repository's files linked into a temp dir with an empty `data/` home and
`.venv` pointing at this environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import REPO
from .test_provenance import cert_chain  # noqa: F401 - chain.pem/key.pem for the documented signing command

DOCS = ("README.md", "docs/*.md", "dbt_usage/README.md")
SCREEN_LINES = 12

# What each documented command promises to print (a regex over its output); others must exit 0 and
# print something. Keys are the command's first words once env assignments and paths are dropped.
PROMISES = {
    "asset-pipeline quickstart": r"ingested 14 versions \(13 new assets\)[^\n]*\nchecks: [^\n]*passed[^\n]*\n"
                                 r"(?:[^\n]*\n)?embedded 11 versions with tiny-test[^\n]*\n"
                                 r"usage: [^\n]*dbt tests (\d+)/\1 passed\nnext: ",
    "asset-pipeline make-samples": r"wrote \d+ sample inputs",
    "asset-pipeline ingest": r"ingested \d+ versions [^\n]*\nchecks: blobs_exist passed",
    "asset-pipeline sql": r"\n\(\d+ rows\)$",
    "asset-pipeline embed": r"embedded \d+ versions with tiny-test \(test model, random weights\) "
                            r"\[recorded in the home\]",
    "asset-pipeline search": r"\n\d+ hits; model: tiny-test \(test model, random weights\) \(recorded in the home\)$",
    "asset-pipeline versions": r"^v1 .*\nv2 ",
    "asset-pipeline get": r'"sha256": |wrote ',
    "asset-pipeline report": r"\Ausage: [^\n]*reports for \d{4}-\d\d-\d\d: [^\n]* dbt tests (\d+)/\1 passed\Z",
    "asset-pipeline archive": r"status: archived$",
    "asset-pipeline restore": r"status: active$",
    "asset-pipeline delete": r"status: deleted$",
    "asset-pipeline undelete": r"status: active$",
    "asset-pipeline create-version": r" is at v\d+ ",
    "asset-pipeline revert": r" is at v\d+: revert to v1 ",
    "asset-pipeline collection": r"\S",
    "asset-pipeline recall": r"recall \S+ of model ",
    "dagster asset materialize": r"RUN_SUCCESS",
    "dbt build": r"Completed successfully",
}


@dataclass
class Block:
    doc: str
    lang: str
    text: str


@dataclass
class Ran:
    """One documented thing that was run: what, its exit status, what it printed."""

    what: str
    status: int
    out: str
    err: str = ""


@dataclass
class DocsRun:
    checkout: Path
    env: dict[str, str]
    shell: list[Ran] = field(default_factory=list)
    python: list[Ran] = field(default_factory=list)
    sql: list[Ran] = field(default_factory=list)
    config: list[Ran] = field(default_factory=list)
    notebook: list[Ran] = field(default_factory=list)


def code_blocks() -> list[Block]:
    blocks = []
    for pattern in DOCS:
        for path in sorted(REPO.glob(pattern)):
            text = path.read_text()
            for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
                blocks.append(Block(str(path.relative_to(REPO)), m.group(1), m.group(2)))
    return blocks


def shell_commands(block: Block) -> list[str]:
    """Each command line of a shell block (continuations joined; comment-only lines dropped)."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def as_run(command: str) -> str | None:
    """The command as this test runs it (None: not run here), see the module docstring."""
    parts = [p.strip() for p in command.split("&&")]
    parts = [p for p in parts if not re.match(r"(python3? -m venv|\S*pip install)\b", p)]
    if not parts or re.search(r"-m pytest\b", parts[-1]):
        return None
    return " && ".join(parts)


def promise_key(command: str) -> str:
    words = [w for w in command.split("#")[0].split() if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
    if "&&" in words:
        words = words[words.index("&&") + 1:]
    words = [w.rsplit("/", 1)[-1] if i == 0 else w for i, w in enumerate(words)]
    return " ".join(words[:3]) if words[:1] == ["dagster"] else " ".join(words[:2])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_check(command: str, checkout: Path, env: dict[str, str]) -> Ran:
    """Start a documented server, wait until its code location has loaded, stop it."""
    port = free_port()
    proc = subprocess.Popen(["bash", "-c", f"{command.split('#')[0].strip()} --port {port}"], cwd=checkout,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    query = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { name "
                                 "locationOrLoadError { __typename ... on PythonError { message } } } } } }"})
    answer, deadline = None, time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query.encode(),
                                                 headers={"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
                entries = answer["data"]["workspaceOrError"]["locationEntries"]
                if entries and all(e["locationOrLoadError"] for e in entries):
                    break
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            out = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out = proc.communicate()[0]
    entries = (answer or {}).get("data", {}).get("workspaceOrError", {}).get("locationEntries") or []
    loaded = bool(entries) and all(e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries)
    return Ran(command, 0 if loaded else 1, json.dumps(entries) + "\n" + out[-3000:])


def run_shell(command: str, checkout: Path, env: dict[str, str], variables: dict[str, str]) -> Ran:
    """One command line in bash. A line that sets a shell variable (`cid=$(…)`, `export NAME=…`)
    keeps its value for the lines after it, as in one terminal session."""
    name = re.match(r"^(?:export )?([A-Za-z_]\w*)=", command)
    script = f"set -o pipefail\n{command}\nrc=$?\n"
    if name:
        script += f'printf "\\0%s" "${{{name.group(1)}}}"\n'
    proc = subprocess.run(["bash", "-c", script + "exit $rc"], cwd=checkout, env={**env, **variables},
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout
    if name:
        out, _, value = out.rpartition("\0")
        if proc.returncode == 0 and value and not out.strip():  # an assignment, not `NAME=… command`
            variables[name.group(1)] = value.strip()
            out = value
    return Ran(command, proc.returncode, out.strip("\n"), proc.stderr)


def run_python_blocks(blocks: list[Block], checkout: Path, env: dict[str, str]) -> list[Ran]:
    """A document's Python blocks as the cells of one notebook, run in order in one kernel."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(b.text) for b in blocks])
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True).execute(env=env, cwd=str(checkout))
    return [Ran(f"{b.doc}: python block {i + 1}", int(any(o.output_type == "error" for o in cell.outputs)),
                "\n".join(o.get("text", "") + "".join(o.get("traceback", [])) for o in cell.outputs),
                "\n".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr"))
            for i, (b, cell) in enumerate(zip(blocks, nb.cells))]


def run_sql(block: Block, home: Path, params: list) -> list[Ran]:
    """Each statement in a plain DuckDB session on the analysts' file, as docs/schema.md says."""
    import duckdb

    ran = []
    con = duckdb.connect(str(home / "analytics.duckdb"), read_only=True)
    try:
        for statement in (s.strip() for s in re.sub(r"--[^\n]*", "", block.text).split(";")):
            if not statement:
                continue
            try:
                rows = con.execute(statement, params if "?" in statement else None).fetchall()
                ran.append(Ran(statement, 0, f"{len(rows)} rows"))
            except duckdb.Error as exc:
                ran.append(Ran(statement, 1, str(exc)))
    finally:
        con.close()
    return ran


def check_config(block: Block) -> Ran:
    import yaml

    from asset_pipeline.lifecycle.policies import parse_config
    from asset_pipeline.sidecar import parse_sidecar

    try:
        if block.lang == "yaml":
            parse_config(yaml.safe_load(block.text), f"{block.doc} yaml block")
        else:
            parse_sidecar(block.text.encode())
        return Ran(f"{block.doc}: {block.lang} block", 0, "valid")
    except Exception as exc:
        return Ran(f"{block.doc}: {block.lang} block", 1, f"{type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def docs_run(tmp_path_factory, cert_chain) -> DocsRun:  # noqa: F811 - the imported fixture
    checkout = tmp_path_factory.mktemp("clone")
    for entry in REPO.iterdir():
        if entry.name not in (".git", "data", ".venv", "build") and not entry.name.endswith((".egg-info", "_cache")):
            (checkout / entry.name).symlink_to(entry)
    (checkout / "data").mkdir()
    shutil.copy(REPO / "data" / "README.md", checkout / "data" / "README.md")
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    for name in ("cert", "key"):
        shutil.copy(cert_chain[name], checkout / ("chain.pem" if name == "cert" else "key.pem"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSET_PIPELINE_", "DAGSTER_", "HF_"))}
    env.update(ASSET_PIPELINE_HOME=str(checkout / "data"), PATH=f"{checkout / '.venv' / 'bin'}:{env['PATH']}")
    run = DocsRun(checkout, env)
    variables: dict[str, str] = {}
    blocks = code_blocks()
    for block in blocks:
        if block.lang in ("bash", "sh", "shell"):
            for command in shell_commands(block):
                runnable = as_run(command)
                if runnable is None:
                    continue
                if re.search(r"\bdagster dev\b", runnable):
                    run.shell.append(serve_and_check(runnable, checkout, env))
                else:
                    run.shell.append(run_shell(runnable, checkout, env, variables))
        elif block.lang in ("yaml", "json"):
            run.config.append(check_config(block))
    python = [b for b in blocks if b.lang == "python"]
    run.python = run_python_blocks(python, checkout, env)
    from asset_pipeline import Catalog, Settings

    hero = Catalog(settings=Settings.from_env(home=checkout / "data")).asset("research/images/hero")["id"]
    for block in (b for b in blocks if b.lang == "sql"):
        run.sql.extend(run_sql(block, checkout / "data", [hero]))
    run.notebook = [run_notebook(checkout, env)]
    return run


def run_notebook(checkout: Path, env: dict[str, str]) -> Ran:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(checkout / "notebooks" / "search.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True).execute(
        env=env, cwd=str(checkout / "notebooks"))
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") +
                     str(o.get("data", {}).get("text/html", "")) + "".join(o.get("traceback", [])) for o in outputs)
    failed = any(o.output_type == "error" for o in outputs) or any(o.get("name") == "stderr" for o in outputs)
    return Ran("notebooks/search.ipynb", int(failed), text)


def _failures(ran: list[Ran]) -> list[str]:
    return [f"{r.what}\n  exit {r.status}\n  {r.out[-2000:]}\n  {r.err[-2000:]}" for r in ran if r.status != 0]


def test_the_quick_start_fits_on_one_screen_and_says_what_to_do_next(docs_run: DocsRun) -> None:
    from asset_pipeline.usage.dbt_project import dbt_project

    quick = next(r for r in docs_run.shell if promise_key(r.what) == "asset-pipeline quickstart")
    lines = quick.out.splitlines()
    assert quick.status == 0 and quick.err == "", quick.err  # no warnings, no Dagster or dbt chatter
    assert len(lines) <= SCREEN_LINES, quick.out
    manifest = json.loads(dbt_project().manifest_path.read_text())
    tests = sum(1 for n in manifest["nodes"].values() if n["resource_type"] == "test")
    assert f"dbt tests {tests}/{tests} passed" in quick.out  # what dbt ran, source tests included
    assert lines[-3].startswith("next: asset-pipeline sql") and "dagster dev" in lines[-1]
    assert not (REPO / "dbt_usage" / "target").exists() and not (REPO / "dbt_usage" / "logs").exists()


def test_every_documented_shell_command_runs_and_prints_what_it_promises(docs_run: DocsRun) -> None:
    problems = _failures(docs_run.shell)
    for r in docs_run.shell:
        key = promise_key(r.what)
        promise = PROMISES.get(key, r"\S")
        if r.status == 0 and not re.search(promise, r.out + ("\n" + r.err if key.startswith("d") else ""), re.M):
            problems.append(f"{r.what}\n  does not print /{promise}/:\n  {r.out[-2000:]}")
        if r.status == 0 and key.startswith("asset-pipeline") and r.err:
            problems.append(f"{r.what}\n  wrote to stderr on success:\n  {r.err[-2000:]}")
    assert len(docs_run.shell) >= 30
    assert problems == []


def test_every_documented_python_snippet_runs(docs_run: DocsRun) -> None:
    assert len(docs_run.python) >= 4
    assert _failures(docs_run.python) == []
    assert [r.err for r in docs_run.python if r.err] == []  # no warnings on stderr


def test_documented_sql_runs_in_a_plain_duckdb_session(docs_run: DocsRun) -> None:
    assert len(docs_run.sql) >= 8
    assert _failures(docs_run.sql) == []


def test_documented_config_examples_are_valid(docs_run: DocsRun) -> None:
    assert {r.what.split(": ")[1] for r in docs_run.config} >= {"yaml block", "json block"}
    assert _failures(docs_run.config) == []


def test_the_search_notebook_runs_on_the_quick_start_home(docs_run: DocsRun) -> None:
    (nb,) = docs_run.notebook
    assert nb.status == 0, nb.out
    assert "tiny-test (test model, random weights)" in nb.out and "recorded in the home" in nb.out
    assert '<img src="data:image/png;base64,' in nb.out and "score " in nb.out  # hits as a thumbnail grid
    assert "prompts/rocket" in nb.out and "clip_tiny_test" in nb.out and "similarity" in nb.out
