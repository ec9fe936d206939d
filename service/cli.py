"""The ``lrsearch`` command line: serve, database upgrades, and a client for the REST API."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

app = typer.Typer(help="lrsearch: distributed learning-rate search.", no_args_is_help=True,
                  add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="API keys for `lrsearch serve --auth` (written straight to the database).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)

# Exit codes scripts can rely on.
EXIT_ERROR, EXIT_UNREACHABLE, EXIT_REJECTED, EXIT_NOT_FOUND, EXIT_JOB_FAILED = 1, 3, 4, 5, 6
EXIT_INTERRUPTED = 130  # as a shell reports Ctrl-C

UrlOpt = Annotated[str, typer.Option("--url", envvar="LRSEARCH_URL", help="the service's URL")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="LRSEARCH_TOKEN", help="API key")]
DbOpt = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL (env LRSEARCH_DATABASE_URL)")]
DEFAULT_URL = "http://127.0.0.1:8000"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind", min=1, max=65535)] = 8000,
    db: DbOpt = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="join this Ray cluster "
                                                       "(env RAY_ADDRESS or LRSEARCH_RAY_ADDRESS); default: start a local Ray")] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", min=1, help="CPUs of the local Ray "
                                                    "(default: all)")] = None,
    auth: Annotated[bool, typer.Option("--auth", envvar="LRSEARCH_AUTH", help="require an API key "
                                       "(Authorization: Bearer KEY) on every route; see `lrsearch keys create`")] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    access_log: Annotated[bool, typer.Option("--access-log", help="log every request; by default "
                                             "successful reads (the dashboard's polls) are not logged")] = False,
    workload_path: Annotated[Path | None, typer.Option(
        "--workload-path", envvar="LRSEARCH_WORKLOAD_PATH", exists=True, file_okay=False,
        help="a directory of workload packages that are not installed: loaded here and shipped to every "
             "Ray worker")] = None,
) -> None:
    """Serve the API and the dashboard, and run jobs."""
    import ipaddress
    import logging

    from lrsearch.service.serving import PortInUse, bind

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not auth:
        err.print(f"[red]refusing to serve on {host} without --auth[/red]: anyone who can reach it could run "
                  "jobs on your cluster. Create a key with `lrsearch keys create --scope admin` and add "
                  "--auth, or serve on 127.0.0.1.")
        raise typer.Exit(2)
    overrides: dict[str, Any] = {"host": host, "port": port, "auth": auth}
    if db:
        overrides["database_url"] = db
    if ray_address:
        overrides["ray_address"] = ray_address
    if num_cpus is not None:
        overrides["num_cpus"] = num_cpus
    if workload_path is not None:
        overrides["workload_path"] = str(workload_path)
    # The port first: a busy one must fail before Ray or the store are touched.
    try:
        sock = bind(host, port)
    except PortInUse as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_ERROR) from None

    from lrsearch.service.app import create_app, start_executor, workload_runtime_env
    from lrsearch.service.config import Settings
    from lrsearch.service.db import DatabaseUnavailable, make_engine, wait_for_database
    from lrsearch.service.serving import serve as run_app
    from lrsearch.workers.ray_cluster import RayUnavailable

    settings = Settings(**overrides)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plug-in, each start
    # The store and Ray before the app: what they lack is said in a line, not a start-up traceback,
    # and a SIGTERM while waiting (a stack taken down) still stops what was started.
    executor = None
    with _sigterm_as_exit():
        try:
            engine = make_engine(settings.database_url)
            try:
                wait_for_database(engine, settings.startup_wait_seconds)
            finally:
                engine.dispose()
            if settings.run_jobs:
                executor = start_executor(settings, workload_runtime_env(settings))
        except (DatabaseUnavailable, RayUnavailable) as exc:
            sock.close()
            err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
            raise typer.Exit(EXIT_UNREACHABLE) from None
    try:
        run_app(create_app(settings, executor), sock, log_level, access_log)
    finally:
        if executor is not None:
            executor.shutdown()


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit here (its default ends the process at once, skipping clean-up)."""
    import signal

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None, revision: str = "head") -> None:
    """Upgrade the database schema (Alembic) to the newest revision."""
    from lrsearch.service.config import Settings
    from lrsearch.service.db import current_revision, make_engine, upgrade

    settings = Settings(database_url=db) if db else Settings()
    engine = make_engine(settings.database_url)
    upgrade(engine, revision)
    console.print(f"database at revision {current_revision(engine)}")
    engine.dispose()


def _keys_session(db: str | None):
    from lrsearch.service.config import Settings
    from lrsearch.service.db import make_engine, make_session_factory, upgrade

    engine = make_engine((Settings(database_url=db) if db else Settings()).database_url)
    upgrade(engine)
    return make_session_factory(engine).begin()


@keys_app.command("create")
def keys_create(
    scope: Annotated[str, typer.Option("--scope", help="read, submit or admin")],
    name: Annotated[str, typer.Option("--name", help="a label")] = "",
    db: DbOpt = None,
) -> None:
    """Create a key; prints it once (its last word). Only its hash is stored."""
    from lrsearch.service.auth import SCOPES, create_key

    if scope not in SCOPES:
        err.print(f"[red]unknown scope {scope!r}[/red]; allowed: {', '.join(SCOPES)}")
        raise typer.Exit(EXIT_ERROR)
    with _keys_session(db) as session:
        row, key = create_key(session, scope, name)
        key_id = row.key_id
    print(f"created key {key_id} with scope {scope}: {key}")


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="the key, or its id")], db: DbOpt = None) -> None:
    """Revoke a key (takes effect within seconds)."""
    from lrsearch.service.auth import revoke_key

    with _keys_session(db) as session:
        row = revoke_key(session, key)
        if row is None:
            err.print("[red]no such key[/red]")
            raise typer.Exit(EXIT_NOT_FOUND)
        key_id = row.key_id
    console.print(f"revoked key {key_id}")


@keys_app.command("list")
def keys_list(db: DbOpt = None) -> None:
    """List keys (ids, scopes, names; never the keys)."""
    from sqlalchemy import select

    from lrsearch.service.models import ApiKey

    table = Table("id", "scope", "name", "created", "revoked")
    with _keys_session(db) as session:
        for row in session.scalars(select(ApiKey).order_by(ApiKey.id)):
            table.add_row(row.key_id, row.scope, row.name, str(row.created_at)[:19],
                          str(row.revoked_at)[:19] if row.revoked_at else "")
    console.print(table)


def _client(url: str, token: str | None):
    from lrsearch.service.client import Client

    return Client(url, token)


def _fail(exc: Exception, url: str, what: str = "request") -> typer.Exit:
    import httpx

    from lrsearch.service.client import LrsearchError, service_url

    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        err.print(f"[red]--url {url!r} is not the service's URL[/red]: {exc}. It looks like http://127.0.0.1:8000.")
        return typer.Exit(EXIT_ERROR)
    if isinstance(exc, httpx.TransportError):
        err.print(f"[red]cannot reach the lrsearch service at {service_url(url)}[/red]: {exc}. Is `lrsearch serve` "
                  "running there? Pass its URL with --url (or LRSEARCH_URL).", soft_wrap=True)
        return typer.Exit(EXIT_UNREACHABLE)
    if isinstance(exc, LrsearchError):
        if exc.status == 422 and isinstance(exc.detail, list):
            err.print(f"[red]the server rejected the {what}:[/red]")
            for d in exc.detail:
                loc = ".".join(str(p) for p in d.get("loc", []) if p != "body")
                err.print(f"  {loc}: {d.get('msg')}")
            return typer.Exit(EXIT_REJECTED)
        err.print(f"[red]error {exc.status}[/red]: {exc}")
        return typer.Exit(EXIT_NOT_FOUND if exc.status == 404 else EXIT_ERROR)
    raise exc


def _load_spec(path: Path) -> dict[str, Any]:
    """The JobSpec in a YAML or JSON file; a file that is not one exits with EXIT_REJECTED and says why."""
    import yaml

    def reject(why: str) -> typer.Exit:
        err.print(f"[red]{path} is not a JobSpec[/red]: {why}")
        return typer.Exit(EXIT_REJECTED)

    try:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise reject(str(exc)) from None
    if not isinstance(data, dict):
        raise reject("it must hold one object (name, workload, strategy, ...)")
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:  # YAML dates, sets, NaN: nothing the API accepts
        raise reject(f"a value JSON cannot carry ({exc}); quote it") from None
    return data


def _finished(job: dict[str, Any]) -> int:
    c = job["trial_counts"]
    return sum(c[k] for k in ("completed", "pruned", "diverged", "failed", "cancelled"))


def _best_or_none(client: Any, job_id: int) -> dict[str, Any] | None:
    """The job's best in full (with a range test's suggestions), None when it has none."""
    from lrsearch.service.client import LrsearchError

    try:
        return client.best(job_id)
    except LrsearchError as exc:
        if exc.status == 404:
            return None
        raise


def _objective_text(best: dict[str, Any], short: bool = False) -> str:
    """``val_accuracy=0.9722 (max)``: the ranking metric's best value, or val_loss for older answers;
    ``short``: ``val_accuracy 0.9722``, the jobs list's narrow form."""
    objective = best.get("objective") or {"metric": "val_loss", "value": best.get("val_loss"), "mode": "min"}
    value = objective["value"]
    if value is None:
        return ""
    if short:
        return f"{objective['metric']} {value:.4g}"
    mode = "" if objective["metric"] == "val_loss" else f" ({objective['mode']})"
    return f"{objective['metric']}={value:.6g}{mode}"


def _where(best: dict[str, Any]) -> str:
    return f"step={best['step']}" if best.get("step") is not None else f"epoch={best['epoch']}"


def _print_best(best: dict[str, Any] | None) -> None:
    if best is None:
        console.print("no trial reported a value of the job's objective yet")
        return
    if best.get("objective") is None and best.get("val_loss") is None:  # a range test's suggestion
        console.print(f"best: lr={best['lr']:.6g} (range-test suggestion, not trained)")
    else:
        extra = ""
        if best.get("objective") and best["objective"]["metric"] != "val_loss" and best.get("val_loss") is not None:
            extra = f"  val_loss={best['val_loss']:.6g}"
        console.print(f"best: trial {best['trial']}  lr={best['lr']:.6g}  {_objective_text(best)}{extra}  "
                      f"{_where(best)}")
    if best.get("transfer"):
        t = best["transfer"]
        console.print(f"lr scaled from {t['from_lr']:.6g} at batch size {t['from_batch_size']} to batch size "
                      f"{t['to_batch_size']} ({t['rule']})")
    if best.get("suggestions"):
        console.print("range-test suggestions: " + "  ".join(f"{o}={lr:.4g}" for o, lr in best["suggestions"].items()))
    interval = best.get("lr_interval")
    if interval:
        console.print(f"as good ({interval['method']}, within {interval['tolerance']:.3g} of the best "
                      f"{interval.get('metric', 'val_loss')}): lr {interval['low']:.4g} to {interval['high']:.4g}")
    for optimizer, b in (best.get("per_optimizer") or {}).items():
        value = b.get("objective", b.get("val_loss"))
        console.print(f"  best {optimizer}: trial {b['trial']}  lr={b['lr']:.4g}"
                      + (f"  {value:.6g}" if value is not None else ""))
    # The config to train with: at the scaled rate when a batch size was asked for.
    console.print_json(json.dumps({**best["config"], "lr": best["lr"]}))


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JobSpec as YAML or JSON")],
    wait: Annotated[bool, typer.Option("--wait", help="show progress until the job ends")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Submit a job; prints its id (with --wait, progress and then the best configuration)."""
    spec = _load_spec(spec_file)
    try:
        with _client(url, token) as client:
            try:
                job = client.submit(spec)
            except Exception as exc:  # noqa: BLE001
                raise _fail(exc, url, f"spec in {spec_file}") from None
            if not wait:
                console.print(job["id"])
                return
            err.print(f"job {job['id']} ({job['name']}) submitted")
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                          TextColumn("{task.fields[best]}"), console=err, transient=False) as progress:
                task = progress.add_task(f"job {job['id']}", total=job.get("total_trials"), best="")

                def update(j: dict[str, Any]) -> None:
                    best = j.get("best")
                    progress.update(task, completed=_finished(j), total=j.get("total_trials"),
                                    description=f"job {j['id']} {j['status']}",
                                    best=f"best lr={best['lr']:.3g} {_objective_text(best)}" if best else "")

                try:
                    final = client.wait(job["id"], on_update=update)
                except KeyboardInterrupt:
                    progress.stop()
                    # Only the waiting stops: the job is the service's and runs on.
                    err.print(f"stopped waiting; job {job['id']} keeps running on the service. Follow it with "
                              f"`lrsearch status {job['id']}`, stop it with `lrsearch cancel {job['id']}`.",
                              soft_wrap=True)
                    raise typer.Exit(EXIT_INTERRUPTED) from None
            console.print(f"job {final['id']} {final['status']}")
            _print_best(_best_or_none(client, final["id"]))
            if final["status"] == "failed":
                raise typer.Exit(EXIT_JOB_FAILED)
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc, url) from None


@app.command("jobs")
def list_jobs(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None,
              limit: Annotated[int, typer.Option(help="how many")] = 50) -> None:
    """List jobs, newest first."""
    try:
        with _client(url, token) as client:
            jobs = client.jobs(limit=limit)
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc, url) from None
    # Fits 80 columns: no outer box; a long name or objective wraps rather than being cut; the
    # creation time as month-day hour:minute (the full time is in `lrsearch status`).
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("name", overflow="fold", min_width=16)
    table.add_column("status", no_wrap=True)
    table.add_column("trials", justify="right", no_wrap=True)
    table.add_column("best lr", justify="right", no_wrap=True)
    table.add_column("best", overflow="fold", min_width=8)
    table.add_column("created", no_wrap=True)
    for j in jobs:
        b = j.get("best")
        table.add_row(str(j["id"]), j["name"], j["status"], f"{_finished(j)}/{j.get('total_trials') or '?'}",
                      f"{b['lr']:.4g}" if b else "", _objective_text(b, short=True) if b else "",
                      j["created_at"][5:16].replace("T", " "))
    console.print(table)


@app.command()
def status(job_id: int, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Show a job as JSON, then why it failed (if it did)."""
    try:
        with _client(url, token) as client:
            job = client.job(job_id)
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc, url) from None
    console.print_json(json.dumps(job))
    if job.get("error"):
        err.print(f"job {job_id} {job['status']}: {job['error']}")


@app.command()
def trials(job_id: int, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None,
           status: Annotated[str | None, typer.Option("--status", help=(
               "only trials in this status (completed, pruned, diverged, failed, ...)"))] = None,
           order: Annotated[str, typer.Option("--order", help=(
               "number, rank (the best first), epochs or status; '-' before it reverses"))] = "number",
           limit: Annotated[int | None, typer.Option("--limit", min=1, help="the first N only")] = None) -> None:
    """List a job's trials: number, status, config, objective and error."""
    try:
        with _client(url, token) as client:
            job = client.job(job_id)
            rows = client.trials(job_id, status=status, order=order, limit=limit)
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc, url) from None
    metric = (job["spec"].get("objective") or {}).get("metric", "val_loss")
    table = Table("#", "status", "lr", "optimizer", "schedule", "warmup", metric, "error")
    for t in rows:
        c, value = t["config"], t.get("objective", t.get("val_loss"))
        table.add_row(str(t["number"]), t["status"], f"{c.get('lr', 0):.4g}", str(c.get("optimizer", "")),
                      str(c.get("schedule", "")), f"{c.get('warmup_fraction', 0):g}",
                      "" if value is None else f"{value:.5g}", t.get("error") or "")
    console.print(table)


@app.command()
def best(job_id: int, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None,
         batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help=(
             "scale the learning rate from the job's batch size to this one"))] = None) -> None:
    """Print the best learning rate of a job (and its configuration)."""
    try:
        with _client(url, token) as client:
            _print_best(client.best(job_id, batch_size=batch_size))
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc, url) from None


@app.command()
def cancel(job_id: int, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Cancel a job: queued trials never start, running ones stop at their next epoch."""
    try:
        with _client(url, token) as client:
            job = client.cancel(job_id)
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc, url) from None
    console.print(f"job {job['id']} {job['status']}"
                  + (" (stopping running trials)" if job["status"] == "running" else ""))


@app.command("export-optuna")
def export_optuna(
    job_id: int,
    storage: Annotated[str, typer.Option("--storage", help="Optuna storage URL, e.g. sqlite:///study.db")],
    study_name: Annotated[str | None, typer.Option("--study-name", help="default: lrsearch-job-ID")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Write a job as an Optuna study (optuna.load_study and optuna-dashboard can open it)."""
    from lrsearch.service.export import to_optuna_study

    name = study_name or f"lrsearch-job-{job_id}"
    try:
        with _client(url, token) as client:
            job = client.job(job_id)
            trials = client.trials(job_id)
            metric = (job["spec"].get("objective") or {}).get("metric", "val_loss")
            curves = {t["number"]: [m.get(metric) for m in client.metrics(job_id, t["number"])] for t in trials}
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc, url) from None
    import optuna

    try:
        study = to_optuna_study(job, trials, curves, storage, name)
    except optuna.exceptions.DuplicatedStudyError:
        err.print(f"[red]a study named {name!r} already exists in {storage}[/red]; pass another --study-name")
        raise typer.Exit(EXIT_ERROR) from None
    except Exception as exc:  # noqa: BLE001 - a bad storage URL, a missing driver, an unwritable file
        err.print(f"[red]cannot write the study to {storage}[/red]: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    best = f"; best value {study.best_value:.6g}" if any(t.value is not None for t in study.trials) else ""
    console.print(f"wrote study {name!r} with {len(study.trials)} trials to {storage}{best}")


def main() -> None:  # pragma: no cover - console entry for `python -m lrsearch`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
