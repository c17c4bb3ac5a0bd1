"""The coordinator's durable state (SQLite): what a restart reads back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dynamr.mapreduce.jobstore import JobStore
from dynamr.rpc import messages as m


def test_a_job_that_succeeded_keeps_its_status_from_its_end_until_it_is_finalized(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.add_job("j", b"plan", "created", 1.0)
    store.job_started("j", 2.0)
    at_end = m.JobStatusView(name="j", state="finishing", maps=3, maps_done=3, counters=(("g", "n", 5),))
    store.job_ended("j", "succeeded", 3.0, None, at_end)
    store.close()
    (job,) = JobStore(tmp_path).jobs()  # as a restarted coordinator reads it
    assert (job.state, job.ended, job.final_status, job.ended_status) == ("succeeded", 3.0, None, at_end)
    store = JobStore(tmp_path)
    final = m.JobStatusView(name="j", state="succeeded", maps=3, maps_done=3)
    store.job_finalized("j", "succeeded", 3.0, final)
    (job,) = store.jobs()
    assert job.final_status == final and job.ended_status is None
    store.forget("j")
    assert store.jobs() == []


def test_a_job_that_failed_keeps_no_status_before_it_is_finalized(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.add_job("j", b"plan", "running", 1.0)
    store.job_ended("j", "failed", 3.0, m.JobFailure(error="ValueError: bad"))
    (job,) = store.jobs()
    assert job.state == "failed" and job.error == m.JobFailure(error="ValueError: bad") and job.ended_status is None


def test_the_state_of_an_earlier_version_opens_and_its_jobs_read_back(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "coordinator.sqlite")
    db.execute("CREATE TABLE jobs (name TEXT PRIMARY KEY, plan TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT "
               "NULL, started REAL NOT NULL DEFAULT 0, ended REAL NOT NULL DEFAULT 0, error TEXT, final_status TEXT)")
    db.execute("INSERT INTO jobs (name, plan, state, created) VALUES ('old', '{}', 'running', 1.0)")
    db.commit()
    db.close()
    (job,) = JobStore(tmp_path).jobs()
    assert (job.name, job.state, job.ended_status) == ("old", "running", None)


def test_a_coordinator_keeps_its_id_across_restarts_and_another_data_directory_makes_another(
        tmp_path: Path) -> None:
    store = JobStore(tmp_path / "a")
    made = store.identity()
    assert len(made) == 32 and store.identity() == made
    store.close()
    assert JobStore(tmp_path / "a").identity() == made
    assert JobStore(tmp_path / "b").identity() != made
    assert JobStore(None).identity() != JobStore(None).identity()  # no data directory: one per process
