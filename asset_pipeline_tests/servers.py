"""Throwaway servers for the tests: Postgres, Redis, moto's S3 server and dagster-celery workers,
each a real process of its own on 127.0.0.1, started from the machine's (Debian's) packages.

Why processes and not in-process fakes: what the distributed tests prove is that nothing but the
home and the Dagster instance is shared between steps. That only holds if every party is its own
process with its own working folder and temp folder, as it would be on another host.

Every helper is a context manager that waits for readiness before it yields and always stops
what it started (a whole process group, so no child outlives the test). A missing binary is an
error naming the Debian package that provides it — never a skip: CI installs them (`.ci/run`),
and a newcomer gets the install line from the README.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_LINE = "apt-get install -y --no-install-recommends postgresql redis-server"


class ServerUnavailable(RuntimeError):
    """A server binary is missing or a server did not become ready; the message says what to do."""


def debian_binary(name: str, package: str, extra_dirs: Sequence[str] = ()) -> str:
    """Path of `name` on PATH or in Debian's version folders (Postgres keeps its server binaries in
    /usr/lib/postgresql/<major>/bin, off PATH); an error naming the package when absent."""
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_dirs:
        candidates = sorted(Path("/").glob(pattern.lstrip("/")), key=lambda p: _version_key(p), reverse=True)
        for folder in candidates:
            if (folder / name).is_file():
                return str(folder / name)
    raise ServerUnavailable(f"`{name}` not found: install the Debian package `{package}` "
                            f"(as root: {INSTALL_LINE}); the README's test command line does it")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in path.parts if p.isdigit())


def venv_script(name: str) -> str:
    """A console script of the running interpreter's environment (CI runs `.venv/bin/python -m
    pytest` without activating the venv, so PATH may not have it)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise ServerUnavailable(f"`{name}` not found beside {sys.executable}: pip install -e '.[test]'")
    return found


def free_port() -> int:
    """A port that was free a moment ago; callers retry if a server then fails to bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], what: str, timeout_s: float, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    """Poll `ready` until it holds; fail early with the log's tail if `proc` died meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerUnavailable(f"{what} exited with {proc.returncode} before it was ready\n{tail(log)}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not ready yet: connection refused, reset, protocol noise
            pass
        time.sleep(0.1)
    raise ServerUnavailable(f"{what} not ready after {timeout_s:.0f}s\n{tail(log)}")


def tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) of a process group, read from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> list[int]:
    """Signal the process group `proc` leads (it was started with start_new_session), wait for all
    of it, then SIGKILL what is left. Returns the pids that needed the SIGKILL.

    The whole group, because a parent's death does not take its children with it: killing
    `dagster-celery` alone leaves its `celery` child (and that child's pool) running."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.poll()
        if not group_members(pgid):
            return []
        time.sleep(0.1)
    stubborn = group_members(pgid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=10)
    return stubborn


# --- Postgres ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    """A running throwaway cluster: password auth on 127.0.0.1, socket in its own folder."""

    host: str
    port: int
    user: str
    password: str
    root: Path

    def connect(self, db: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=db)

    def create_database(self, prefix: str = "dagster") -> str:
        """A fresh, empty database: one per test keeps runs and event logs apart."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        """One statement outside a transaction (CREATE/DROP DATABASE refuse to run in one)."""
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def env(self, db: str) -> dict[str, str]:
        """What deploy/dagster-postgres.yaml reads (DAGSTER_PG_*), for `db`."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USERNAME": self.user,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": db}


def _as_postgres_user() -> dict:
    """Postgres refuses to run as root: when we are root, initdb and the server run as Debian's
    `postgres` user (created by the postgresql package)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as e:
        raise ServerUnavailable("running as root and there is no `postgres` user: install the Debian package "
                                f"`postgresql` ({INSTALL_LINE})") from e
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def postgres_cluster(start_timeout_s: float = 60.0) -> Iterator[Postgres]:
    """initdb + pg_ctl: a cluster in a temp folder, listening on 127.0.0.1 only, on a free port,
    with its socket in that folder; stopped and removed afterwards."""
    bin_dirs = ("/usr/lib/postgresql/*/bin",)
    initdb = debian_binary("initdb", "postgresql", bin_dirs)
    pg_ctl = debian_binary("pg_ctl", "postgresql", bin_dirs)
    as_user = _as_postgres_user()
    # Not under pytest's tmp_path: that is 0700 root-owned, and the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="asset-pipeline-pg-"))
    try:
        if as_user:
            os.chown(root, as_user["user"], as_user["group"])
        data, sockets, log = root / "data", root / "sockets", root / "server.log"
        run_as = {**as_user, "cwd": root, "env": {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8",
                                                  "HOME": str(root)}}
        password = secrets.token_urlsafe(16)
        pwfile = root / "pw"
        pwfile.write_text(password + "\n")
        sockets.mkdir()
        if as_user:
            for p in (pwfile, sockets):
                os.chown(p, as_user["user"], as_user["group"])
        subprocess.run([initdb, "-D", str(data), "-U", "dagster", f"--pwfile={pwfile}", "--auth=scram-sha-256",
                        "-E", "UTF8", "--locale=C", "--no-sync"], check=True, capture_output=True, **run_as)
        pwfile.unlink()
        for attempt in range(5):
            port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            started = subprocess.run([pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w",
                                      "-t", str(int(start_timeout_s)), "start"],
                                     capture_output=True, text=True, start_new_session=True, **run_as)
            if started.returncode == 0:
                break
            if attempt == 4:
                raise ServerUnavailable(f"pg_ctl start failed: {started.stderr}\n{tail(log)}")
        server = Postgres("127.0.0.1", port, "dagster", password, root)
        try:
            wait_until(lambda: server.connect().close() is None, "postgres", start_timeout_s, log=log)
            yield server
        finally:
            subprocess.run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, **run_as)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- Redis --------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(folder: Path, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Debian's redis-server in the foreground on 127.0.0.1, no persistence; yields redis://…/0."""
    import redis

    binary = debian_binary("redis-server", "redis-server")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    for attempt in range(5):
        port = free_port()
        with log.open("ab") as out:
            proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                     "--appendonly", "no", "--daemonize", "no", "--dir", str(folder)],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda p=port: redis.Redis(host="127.0.0.1", port=p, socket_timeout=1).ping(),
                       "redis-server", start_timeout_s, proc, log)
        except ServerUnavailable:
            stop_group(proc)
            if attempt == 4:
                raise
            continue
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_group(proc)
        return


# --- moto's S3 server ---------------------------------------------------------------------------


@contextlib.contextmanager
def moto_s3_server(folder: Path, start_timeout_s: float = 60.0) -> Iterator[str]:
    """`moto_server -H 127.0.0.1 -p PORT` as its own process: an S3 endpoint that other processes
    (Dagster steps on Celery workers) reach over HTTP like a real one. Yields its URL."""
    binary = venv_script("moto_server")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "moto.log"
    for attempt in range(5):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd=folder)
        try:
            wait_until(lambda u=url: urllib.request.urlopen(f"{u}/moto-api/", timeout=2).status == 200,
                       "moto_server", start_timeout_s, proc, log)
        except ServerUnavailable:
            stop_group(proc)
            if attempt == 4:
                raise
            continue
        try:
            yield url
        finally:
            stop_group(proc)
        return


# --- dagster-celery workers ---------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one worker: the Celery queues it serves (empty: the default queue) and its pool.
    `solo` runs each task in the worker's main process, which may start processes of its own (a
    prefork pool's children are daemonic and may not: no DataLoader workers there)."""

    queues: tuple[str, ...] = ()
    pool: str = "prefork"


@dataclass
class CeleryWorker:
    """One `dagster-celery worker start` process (and its `celery` child) with its own working
    folder, temp folder and DAGSTER_HOME — what it would have on a host of its own."""

    name: str
    proc: subprocess.Popen
    cwd: Path
    tmpdir: Path
    dagster_home: Path
    log: Path
    leftovers: list[int] = field(default_factory=list)

    @property
    def hostname(self) -> str:
        """The node name Celery reports (`-n NAME` becomes NAME@host)."""
        return f"{self.name}@{socket.gethostname()}"


@contextlib.contextmanager
def celery_workers(specs: Mapping[str, WorkerSpec], env: Mapping[str, str], root: Path, worker_yaml: Path,
                   instance_yaml: Path, broker: str, concurrency: int = 1,
                   start_timeout_s: float = 120.0) -> Iterator[list[CeleryWorker]]:
    """Start one dagster-celery worker per name in `specs` and wait until each answers a Celery ping.

    `env` is passed as given (PYTHONPATH included) plus, per worker, its own DAGSTER_HOME (a folder
    holding a copy of `instance_yaml`), TMPDIR and working folder. On exit every worker's whole
    process group is stopped (TERM, then KILL), so no `celery` child is orphaned."""
    from dagster_celery.make_app import make_app

    script = venv_script("dagster-celery")
    workers: list[CeleryWorker] = []
    try:
        for name, spec in specs.items():
            cwd = root / name
            # A short TMPDIR of its own: Python's multiprocessing puts Unix sockets there (torch's
            # DataLoader shares tensors through them), and a socket path may not exceed 107 bytes.
            tmpdir, dagster_home = Path(tempfile.mkdtemp(prefix=f"apw-{name}-")), cwd / "dagster_home"
            dagster_home.mkdir(parents=True, exist_ok=True)
            (cwd / "tmp").symlink_to(tmpdir)  # beside the worker's other folders, for a person looking
            shutil.copyfile(instance_yaml, dagster_home / "dagster.yaml")
            log = cwd / "worker.log"
            worker_env = {**env, "DAGSTER_HOME": str(dagster_home), "TMPDIR": str(tmpdir),
                          "TMP": str(tmpdir), "TEMP": str(tmpdir)}
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [script, "worker", "start", "-A", "dagster_celery.app", "-y", str(worker_yaml), "-n", name,
                     *[arg for q in spec.queues for arg in ("-q", q)], "--", f"--concurrency={concurrency}",
                     f"--pool={spec.pool}", "--without-gossip", "--without-mingle",
                     "--without-heartbeat"],
                    env=worker_env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            workers.append(CeleryWorker(name, proc, cwd, tmpdir, dagster_home, log))
        app = make_app({"broker": broker, "backend": broker})
        try:
            for w in workers:
                wait_until(lambda w=w: bool(app.control.ping(destination=[w.hostname], timeout=0.5)),
                           f"celery worker {w.name}", start_timeout_s, w.proc, w.log)
        finally:
            app.close()
        yield workers
    finally:
        for w in workers:
            w.leftovers = stop_group(w.proc)
            shutil.rmtree(w.tmpdir, ignore_errors=True)
