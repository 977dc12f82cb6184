"""The team deployment on one machine: PostgreSQL, an S3-compatible object store and an
``mlflow server`` on 127.0.0.1, as README "Deploying for a team" sets them up.

- PostgreSQL: the machine's server binaries (``initdb``, ``pg_ctl``; Debian keeps them in
  ``/usr/lib/postgresql/<N>/bin``), a throw-away cluster with trust authentication on a
  free TCP port. PostgreSQL refuses to run as root, so as root the cluster belongs to the
  ``postgres`` user (else ``nobody``) and its commands run as that user.
- S3: moto's standalone server (``moto_server``, from the test extras), one bucket.
- ``mlflow server --backend-store-uri postgresql://... --artifacts-destination s3://...``:
  clients upload and download artifacts through the server (``--serve-artifacts``, the
  default), so only the server holds the object store's credentials and endpoint.

``team_stack(folder)`` starts all three and stops them afterwards, even when the body
fails. Run this file to start the same stack by hand and try the team setup:
``.venv/bin/python tests/team_stack.py`` prints the environment to use and waits for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import (
    BIN,
    _free_port,
    require_slow_marker,
    stop_process_group,
    test_env,
    wait_for_http,
)

# What moto accepts, and what the README's MinIO example would set to its own keys.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                  "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "atelier"
DATABASE = "mlflow"
DATABASE_USER = "atelier"


@dataclass(frozen=True)
class TeamStack:
    """Where the running stack answers."""

    tracking_uri: str        # the mlflow server, for MLFLOW_TRACKING_URI
    database_url: str        # its PostgreSQL backend store
    s3_endpoint: str         # the object store, for MLFLOW_S3_ENDPOINT_URL / DVC's endpointurl
    bucket: str
    artifacts_destination: str  # s3://<bucket>/mlflow
    dvc_remote: str             # s3://<bucket>/dvc

    def s3_client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint,
                            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"])

    def bucket_objects(self, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix`` in the bucket: key -> size in bytes."""
        pages = self.s3_client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}


def postgres_binary(name: str) -> str | None:
    """``name`` (initdb, pg_ctl) from PATH, else from Debian's newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _cluster_owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as when we are root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("Running as root, and neither a 'postgres' nor a 'nobody' user exists "
                       "to run PostgreSQL as (it refuses to run as root). Create one, e.g. "
                       "`useradd --system postgres`.")


def _run_as(owner: pwd.struct_passwd | None, command: list[str], cwd: Path) -> None:
    as_owner = {} if owner is None else {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C"}
    if owner is not None:
        env.update(HOME=str(cwd), USER=owner.pw_name, LOGNAME=owner.pw_name)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                            **as_owner)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with an empty database; yields its URL
    (``postgresql+psycopg2://atelier@127.0.0.1:<port>/mlflow``) and deletes the cluster afterwards."""
    require_slow_marker("PostgreSQL")
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if not (initdb and pg_ctl):
        raise FileNotFoundError("PostgreSQL's server binaries (initdb, pg_ctl) are not on PATH nor "
                                "in /usr/lib/postgresql/*/bin: install them, e.g. "
                                "`apt-get install postgresql` (make test does it).")
    owner = _cluster_owner()
    # Not under pytest's tmp_path: as root that is private to root, and the cluster's owner
    # must reach its data directory and socket folder.
    home = Path(tempfile.mkdtemp(prefix="atelier-postgres-"))
    if owner is not None:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    data, log, port = home / "data", home / "postgres.log", _free_port()
    started = False
    try:
        _run_as(owner, [initdb, "-D", str(data), "-U", DATABASE_USER, "--auth=trust",
                        "--encoding=UTF8", "--locale=C", "--no-sync"], cwd=home)
        # A socket folder of our own (the default /var/run/postgresql may not be writable),
        # TCP on loopback only; durability is not needed for a throw-away cluster.
        options = f"-h 127.0.0.1 -p {port} -k {home} -c fsync=off -c full_page_writes=off"
        try:
            _run_as(owner, [pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60",
                            "start"], cwd=home)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{log.read_text()[-3000:] if log.exists() else ''}") from None
        started = True
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user=DATABASE_USER, dbname="postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            connection.close()
        # The driver named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, while the
        # s3 extra installs psycopg2 (psycopg2-binary).
        yield f"postgresql+psycopg2://{DATABASE_USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run_as(owner, [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=home)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _server(command: list[str], env: dict[str, str], folder: Path, name: str,
            ready_path: str, port: int) -> Iterator[str]:
    log_path = folder / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_http(f"{url}{ready_path}", process, log_path, name)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have died already
                stop_process_group(process)


@contextlib.contextmanager
def s3_server(folder: Path) -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1 with the bucket ``BUCKET``; yields its URL."""
    require_slow_marker("an S3 server (moto)")
    port = _free_port()
    command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with _server(command, test_env(**S3_CREDENTIALS), folder, "moto_server", "/moto-api/", port) as url:
        import boto3

        boto3.client("s3", endpoint_url=url, region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
                     aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                     ).create_bucket(Bucket=BUCKET)
        yield url


@contextlib.contextmanager
def team_stack(folder: Path) -> Iterator[TeamStack]:
    """PostgreSQL, the S3 store and ``mlflow server`` (the one the README's team section
    shows) on 127.0.0.1; logs in ``folder``. Stops all three afterwards."""
    require_slow_marker("the team deployment (PostgreSQL, S3, mlflow server)")
    folder.mkdir(parents=True, exist_ok=True)
    with postgres_server() as database_url, s3_server(folder) as s3_endpoint:
        artifacts, port = f"s3://{BUCKET}/mlflow", _free_port()
        command = [str(BIN / "mlflow"), "server", "--backend-store-uri", database_url,
                   "--artifacts-destination", artifacts, "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1"]
        # MLflow 3's job runner (seven huey consumers, for GenAI jobs) is not needed here
        # and would take the CPU from the training runs while it starts.
        env = test_env(MLFLOW_S3_ENDPOINT_URL=s3_endpoint, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                       **S3_CREDENTIALS)
        with _server(command, env, folder, "mlflow_server", "/health", port) as tracking_uri:
            yield TeamStack(tracking_uri=tracking_uri, database_url=database_url,
                            s3_endpoint=s3_endpoint, bucket=BUCKET,
                            artifacts_destination=artifacts, dvc_remote=f"s3://{BUCKET}/dvc")


def main() -> None:
    """Start the stack and print how to use it; stop it on Ctrl-C."""
    import signal

    def stop(signum, frame):  # a `kill` stops the servers too, as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="atelier-team-"))
    with team_stack(folder) as stack:
        print(f"""Team stack running (logs in {folder}); Ctrl-C stops it.
  PostgreSQL (backend store): {stack.database_url}
  S3 endpoint:                {stack.s3_endpoint}  bucket {stack.bucket}
  mlflow server:              {stack.tracking_uri}  (artifacts in {stack.artifacts_destination})
In a clone of the project:
  export MLFLOW_TRACKING_URI={stack.tracking_uri}
  export {' '.join(f'{key}={value}' for key, value in S3_CREDENTIALS.items())}
  dvc remote add -d team {stack.dvc_remote}
  dvc remote modify team endpointurl {stack.s3_endpoint}
  dvc push && PYTHON=.venv/bin/python bash scripts/retrain.sh""", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
