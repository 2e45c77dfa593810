"""Scheduled local retraining with APScheduler (cron trigger, one run at a time).

Every run goes through the same gates as a manual run: the ExampleGen picks the newest span,
the gate compares against the latest blessed model of each λ, and only blessed models are pushed.
"""
from __future__ import annotations

from typing import Callable

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from pipelines.configs import PipelineConfig
from pipelines.runner import format_summary, run_local


def schedule_local(config: PipelineConfig, cron: str, *, beam_args: list[str] | None = None,
                   max_runs: int | None = None, run_now: bool = False,
                   on_summary: Callable[[dict], None] = lambda s: print(format_summary(s),
                                                                         flush=True)) -> int:
    """Blocks, running the pipeline at every `cron` tick (5-field crontab, local time).

    max_runs: stop after that many runs (None: forever). run_now: first run immediately.
    Returns the number of runs done. A failed run is reported and the schedule continues.
    """
    trigger = CronTrigger.from_crontab(cron)  # raises ValueError on a malformed expression
    scheduler = BlockingScheduler()
    done = {"runs": 0}

    def job() -> None:
        try:
            on_summary(run_local(config, beam_args=beam_args))
        except Exception as error:  # a failed run must not kill the schedule
            print(f"scheduled run failed: {type(error).__name__}: {error}", flush=True)
        done["runs"] += 1
        if max_runs is not None and done["runs"] >= max_runs:
            scheduler.shutdown(wait=False)

    scheduler.add_job(job, trigger, id="retrain", max_instances=1, coalesce=True)
    if run_now:
        scheduler.add_job(job, id="retrain-now")
    print(f"scheduled {config.name} with cron '{cron}'"
          + (f", stopping after {max_runs} run(s)" if max_runs else ""), flush=True)
    scheduler.start()
    return done["runs"]
