"""One Settings class for the service; environment variables and CLI flags feed it (flags win)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # populate_by_name: Settings(database_url=...) works without an alias that would also read a
    # machine-wide DATABASE_URL from the environment.
    model_config = SettingsConfigDict(env_prefix="LRSEARCH_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="sqlite:///./lrsearch.db",
        validation_alias=AliasChoices("LRSEARCH_DATABASE_URL"),
    )
    ray_address: str | None = Field(
        default=None, validation_alias=AliasChoices("RAY_ADDRESS", "LRSEARCH_RAY_ADDRESS", "ray_address")
    )
    num_cpus: int | None = None  # local Ray only; None: all cores
    # A directory of workload packages that are not installed: loaded here, shipped to every Ray worker.
    workload_path: str | None = None
    # The object store of a local Ray; trials pass only small results, so keep it small.
    object_store_bytes: int = 128 * 1024**2
    host: str = "127.0.0.1"
    port: int = 8000
    # How long `lrsearch serve` waits, at start, for the database and for a Ray cluster's head to
    # answer (in a compose stack they start beside it) before it exits saying what to do.
    startup_wait_seconds: float = 30.0

    # Caps: a spec beyond them is rejected with 422.
    max_trials: int = 100_000
    max_epochs: int = 1_000  # also the most evaluations a step job's trial may make
    max_steps: int = 10_000_000
    max_batch_size: int = 1_000_000
    max_concurrent: int = 256
    max_grid_points: int = 100_000
    max_name_length: int = 200
    max_body_bytes: int = 1024 * 1024

    # A job page with more trials than this shows the server's summary of them (a sample, the
    # best-so-far line, curves by lr band) and pages its table on the server.
    dashboard_summary_trials: int = 1000

    # How often the job runner looks for queued jobs and cancel requests (seconds).
    poll_interval: float = 0.5
    # Jobs one service process drives at once; more wait queued.
    max_running_jobs: int = 4
    # A job whose owner has not renewed its lease for this long is taken over (seconds).
    lease_seconds: float = 15.0
    # Actors started with the service so the first job does not wait for torch to import.
    prewarm_actors: int = 2
    # Service-owned files (trial checkpoints).
    data_dir: str = "./lrsearch-data"
    # Checkpoint a running trial every this many epochs (0: by time only), and whenever this many
    # seconds of training passed since its last checkpoint (0: by epochs only). A lost worker or a
    # restarted service resumes the trial from its last checkpoint.
    checkpoint_every: int = 0
    checkpoint_seconds: float = 1.0
    # Require an API key on every route (lrsearch serve --auth).
    auth: bool = False
    # Job submissions per API key: sustained per minute, and the burst allowed.
    submit_rate_per_minute: float = 60.0
    submit_burst: int = 20
    # Run the job runner (tests of the bare API can switch it off).
    run_jobs: bool = True
    # Upgrade the database to the newest migration on start.
    auto_upgrade: bool = True
