"""A throwaway PostgreSQL cluster for tests: initdb in a temporary folder, 127.0.0.1 only, trust auth.

The server binaries come from the machine (PostgreSQL 15 is in the CI image: /usr/lib/postgresql/15/bin).
PostgreSQL refuses to run as root, so under root (as `make test` runs in CI) every server command runs
as the `postgres` system user, in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

from servers import free_port

BIN_DIRS = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/*/bin"]  # Debian's layout, 15 first (the CI image's)
USER = "rlgen"  # the superuser the cluster is created with, as in docker/compose.yaml


class Postgres(NamedTuple):
    host: str
    port: int
    user: str
    root: Path  # the temporary folder: data/, the socket, the server log

    def url(self, database: str, driver: str = "postgresql") -> str:
        """A SQLAlchemy URL of one database: `postgresql` (psycopg2, MLflow) or `postgresql+asyncpg` (Prefect)."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        """Create database `name`, owned by the test superuser, empty (dropped first if it exists)."""
        import psycopg2  # the `dev` extra installs it (MLflow's driver for PostgreSQL)

        connection = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname="postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()


def find_bin() -> Path:
    """The folder with initdb, pg_ctl and postgres; raises FileNotFoundError saying where it looked."""
    candidates = [os.environ.get("RLGEN_TEST_PG_BIN", "")]
    candidates += [str(p) for pattern in BIN_DIRS for p in sorted(Path("/").glob(pattern.lstrip("/")))]
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).parent))
    for folder in filter(None, candidates):
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    looked = ", ".join(["$RLGEN_TEST_PG_BIN", *BIN_DIRS, "initdb on PATH"])
    raise FileNotFoundError(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in {looked}. "
        "Install them (Debian/Ubuntu: apt-get install postgresql-15) or point RLGEN_TEST_PG_BIN at their folder."
    )


def _as_owner() -> dict:
    """subprocess keyword arguments that run a command as the cluster's owner: `postgres` under root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": pwd.getpwnam("postgres").pw_gid, "extra_groups": []}


def _run(args: list[str], root: Path) -> None:
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=120, check=False, **_as_owner())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")


def start() -> Postgres:
    """initdb a cluster in a new temporary folder and start it on a free port of 127.0.0.1."""
    bin_dir = find_bin()
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="rlgen-pg-", dir="/tmp" if as_root else None))  # /tmp: `postgres` can reach it
    try:
        if as_root:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
        data = root / "data"
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            root,
        )
        # only TCP from 127.0.0.1, without a password; the socket (in root/) accepts nobody
        (data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
        cluster = Postgres("127.0.0.1", port, USER, root)
        try:
            _run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(root / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
                root,
            )
        except BaseException as err:
            log = root / "server.log"
            text = log.read_text()[-3000:] if log.exists() else "(none)"
            with contextlib.suppress(Exception):  # a server that started too slowly is still stopped
                stop(cluster)
            raise RuntimeError(f"{err}\nserver log:\n{text}") from err
        return cluster
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def stop(pg: Postgres) -> None:
    """Stop the server (immediately: its data are thrown away) and remove its folder."""
    try:
        _run([str(find_bin() / "pg_ctl"), "-D", str(pg.root / "data"), "-m", "immediate", "-w", "stop"], pg.root)
    finally:
        shutil.rmtree(pg.root, ignore_errors=True)
