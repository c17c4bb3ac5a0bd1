"""The coordinator's durable state: jobs and attempts in SQLite (stdlib, WAL), so a restart resumes jobs.

What is kept, and why it is enough (see :meth:`Coordinator.recover`):

- ``jobs``: each job's plan and lifecycle (created, running, succeeded, failed, killed), its error, and
  once it is finalized, its final status (so ``dynamr status`` still answers after a restart). Task
  progress is *not* kept here: the commit records in the replicated store are the truth, and a restarted
  coordinator re-reads them (task ids are deterministic), so a crash between writing a commit record and
  noting it here loses nothing.
- ``ended``: the status of a job that succeeded, kept from its end until it is finalized: its cleanup deletes
  the commit records, so a restart in between learns from this that the job is done (and finishes the
  cleanup instead of running the job again).
- ``attempts``: every attempt ever started (node, times, outcome). A restart uses them for ``status``, and
  to find and delete every attempt's intermediate output when the job ends; once a finished job's late
  sweep is done (``swept``) they serve only as its history (the dashboard's timeline).
- ``logs``: what each attempt that failed or printed something left (its output, bounded, and the user's
  traceback), for ``dynamr logs``; kept until the job is deleted, at most :data:`LOG_BYTES_PER_JOB` of
  output from attempts that succeeded.
- ``inputs``: the input splits of each map of step 0 of a job (the dashboard shows them).
- ``meta``: the coordinator's incarnation number, part of every attempt id, so attempt ids never repeat
  across restarts (an attempt of the previous incarnation still running on a node stays distinguishable).
  And its id, made once, by which its claim on the store is known (:mod:`dynamr.mapreduce.claims`).

Writes are small and commit at once (``synchronous=NORMAL`` under WAL: a power loss may lose the last
transactions, a process crash loses nothing). Without a data directory the state lives in memory.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamr.errors import ProtocolError
from dynamr.rpc import messages as m
from dynamr.rpc.codec import pack_record, unpack_record

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY, plan TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL,
    started REAL NOT NULL DEFAULT 0, ended REAL NOT NULL DEFAULT 0, error TEXT,
    final_status TEXT);
CREATE TABLE IF NOT EXISTS attempts (
    attempt TEXT PRIMARY KEY, job TEXT NOT NULL, task TEXT NOT NULL, node TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, ok INTEGER, error TEXT);
CREATE INDEX IF NOT EXISTS attempts_by_job ON attempts (job);
CREATE TABLE IF NOT EXISTS logs (
    attempt TEXT PRIMARY KEY, job TEXT NOT NULL, task TEXT NOT NULL, node TEXT NOT NULL, ok INTEGER NOT NULL,
    started REAL NOT NULL, ended REAL NOT NULL, error TEXT NOT NULL, traceback TEXT NOT NULL,
    output TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_job ON logs (job);
CREATE TABLE IF NOT EXISTS swept (job TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ended (job TEXT PRIMARY KEY, status BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (
    job TEXT NOT NULL, task TEXT NOT NULL, split BLOB NOT NULL, PRIMARY KEY (job, task));
"""
#: bytes of output kept per job from attempts that succeeded (a failed attempt's log is always kept; each is
#: bounded, see dynamr.mapreduce.taskoutput)
LOG_BYTES_PER_JOB = 32 << 20


@dataclass
class StoredJob:
    name: str
    #: the plan as kept (see dynamr.mapreduce.jobplan.dump_plan; text: the JSON of earlier versions)
    plan: bytes | str
    state: str
    created: float
    started: float
    ended: float
    error: m.JobFailure | None
    final_status: m.JobStatusView | None
    #: a job that succeeded, not yet finalized: its status when it ended
    ended_status: m.JobStatusView | None = None


@dataclass
class StoredAttempt:
    attempt: str
    task: str
    node: str
    started: float
    ended: float | None
    ok: bool | None
    error: str


class JobStore:
    def __init__(self, data_dir: Path | None) -> None:
        if data_dir is None:
            path = ":memory:"
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            path = str(data_dir / "coordinator.sqlite")
        self.persistent = data_dir is not None
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def next_incarnation(self) -> int:
        """A number larger than any earlier start of this coordinator's (stored at once)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'incarnation'").fetchone()
        incarnation = int(row[0]) + 1 if row else 1
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('incarnation', ?)", (str(incarnation),))
        return incarnation

    def identity(self) -> str:
        """This coordinator's id, made once and kept (random per process without a data directory)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()
        if row:
            return str(row[0])
        made = secrets.token_hex(16)
        self._db.execute("INSERT INTO meta VALUES ('id', ?)", (made,))
        return made

    # --- jobs ----------------------------------------------------------------------------------------

    def add_job(self, name: str, plan: bytes, state: str, now: float) -> None:
        self._db.execute("INSERT INTO jobs (name, plan, state, created) VALUES (?, ?, ?, ?)",
                         (name, plan, state, now))

    def job_started(self, name: str, now: float) -> None:
        self._db.execute("UPDATE jobs SET state = 'running', started = ? WHERE name = ?", (now, name))

    def job_ended(self, name: str, state: str, ended: float, error: m.JobFailure | None,
                  status: m.JobStatusView | None = None) -> None:
        """A job ended (recorded before its cleanup, so a restart finishes the cleanup); one that succeeded
        keeps its status until it is finalized."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE jobs SET state = ?, ended = ?, error = ? WHERE name = ?",
                             (state, ended, pack_record(error) if error else None, name))
            if status is not None:
                self._db.execute("INSERT OR REPLACE INTO ended VALUES (?, ?)", (name, pack_record(status)))

    def job_finalized(self, name: str, state: str, ended: float, status: m.JobStatusView) -> None:
        """A job ended and is cleaned up: keep its final status (its attempts stay until the late sweep)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE jobs SET state = ?, ended = ?, final_status = ? WHERE name = ?",
                             (state, ended, pack_record(status), name))
            self._db.execute("DELETE FROM ended WHERE job = ?", (name,))

    def job_swept(self, name: str) -> None:
        """A finalized job's late sweep is done: its attempts are history only (not swept again)."""
        self._db.execute("INSERT OR IGNORE INTO swept VALUES (?)", (name,))

    def forget(self, name: str) -> None:
        """A deleted job: nothing of it stays."""
        self._db.execute("DELETE FROM attempts WHERE job = ?", (name,))
        self._db.execute("DELETE FROM logs WHERE job = ?", (name,))
        self._db.execute("DELETE FROM swept WHERE job = ?", (name,))
        self._db.execute("DELETE FROM ended WHERE job = ?", (name,))
        self._db.execute("DELETE FROM inputs WHERE job = ?", (name,))
        self._db.execute("DELETE FROM jobs WHERE name = ?", (name,))

    def keep_inputs(self, job: str, splits: list[tuple[str, tuple[m.SplitRef, ...]]]) -> None:
        """The input splits of each map task of a job (kept when it starts, for when it has ended)."""
        self._db.executemany("INSERT OR REPLACE INTO inputs VALUES (?, ?, ?)",
                             [(job, task, pack_record(m.TaskInput(kind="split", splits=pieces)))
                              for task, pieces in splits])

    def inputs(self, job: str) -> dict[str, tuple[m.SplitRef, ...]]:
        rows = self._db.execute("SELECT task, split FROM inputs WHERE job = ?", (job,)).fetchall()
        return {task: _splits(raw) for task, raw in rows}

    def jobs(self) -> list[StoredJob]:
        rows = self._db.execute("SELECT name, plan, state, created, started, jobs.ended, error, final_status, "
                                "ended.status FROM jobs LEFT JOIN ended ON ended.job = jobs.name "
                                "ORDER BY created").fetchall()
        return [StoredJob(name, plan, state, created, started, ended, _failure(error) if error else None,
                          _status(final) if final else None, _status(at_end) if at_end else None)
                for name, plan, state, created, started, ended, error, final, at_end in rows]

    def final_status(self, name: str) -> m.JobStatusView | None:
        """A finalized job's kept status (None: no such job, or not finalized)."""
        row = self._db.execute("SELECT final_status FROM jobs WHERE name = ?", (name,)).fetchone()
        return _status(row[0]) if row and row[0] else None

    # --- attempts ------------------------------------------------------------------------------------

    def attempt_started(self, job: str, task: str, attempt: str, node: str, now: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO attempts (attempt, job, task, node, started) VALUES (?, ?, ?, ?, ?)",
                         (attempt, job, task, node, now))

    def attempt_ended(self, attempt: str, ok: bool, error: str, now: float, output: str = "",
                      traceback: str = "") -> None:
        """An attempt ended; one that failed or printed something leaves a log (see :meth:`logs`)."""
        self._db.execute("UPDATE attempts SET ended = ?, ok = ?, error = ? WHERE attempt = ?",
                         (now, int(ok), error, attempt))
        if ok and not output:
            return
        if ok:
            row = self._db.execute("SELECT job FROM attempts WHERE attempt = ?", (attempt,)).fetchone()
            kept = row and self._db.execute("SELECT COALESCE(SUM(LENGTH(output)), 0) FROM logs WHERE job = ? AND ok",
                                            (row[0],)).fetchone()[0]
            if not row or kept + len(output) > LOG_BYTES_PER_JOB:
                return
        self._db.execute("INSERT OR IGNORE INTO logs (attempt, job, task, node, ok, started, ended, error, traceback, "
                         "output) SELECT attempt, job, task, node, ?, started, ?, ?, ?, ? FROM attempts "
                         "WHERE attempt = ?", (int(ok), now, error, traceback, output, attempt))

    def logs(self, job: str) -> list[m.AttemptLog]:
        """The logs of a job's attempts, in the order they started."""
        rows = self._db.execute("SELECT task, attempt, node, ok, started, ended, error, traceback, output FROM logs "
                                "WHERE job = ? ORDER BY started, attempt", (job,)).fetchall()
        return [m.AttemptLog(task=t, attempt=a, node=n, ok=bool(ok), started=s, ended=e, error=err,
                             traceback=tb, output=out) for t, a, n, ok, s, e, err, tb, out in rows]

    def attempts(self, job: str) -> list[StoredAttempt]:
        """The attempts of a job not yet swept (what a restart must clean up after)."""
        if self._db.execute("SELECT 1 FROM swept WHERE job = ?", (job,)).fetchone():
            return []
        return self.history(job)

    def history(self, job: str) -> list[StoredAttempt]:
        """Every attempt a job ever started, in the order they started."""
        rows = self._db.execute("SELECT attempt, task, node, started, ended, ok, error FROM attempts "
                                "WHERE job = ? ORDER BY started", (job,)).fetchall()
        return [StoredAttempt(a, t, n, s, e, None if ok is None else bool(ok), err or "")
                for a, t, n, s, e, ok, err in rows]


def _failure(raw: bytes | str) -> m.JobFailure:
    """A kept failure (msgpack; JSON in earlier versions)."""
    if isinstance(raw, bytes):
        return unpack_record(m.JobFailure, raw)
    return _failure_from_json(json.loads(raw))


def _failure_from_json(data: Any) -> m.JobFailure:
    split = data.get("input")
    return m.JobFailure(task=str(data.get("task", "")), attempt=str(data.get("attempt", "")),
                        node=str(data.get("node", "")), error=str(data.get("error", "")),
                        traceback=str(data.get("traceback", "")), input=m.SplitRef(**split) if split else None)


def _status(raw: bytes | str) -> m.JobStatusView:
    """A kept final status (msgpack; JSON in earlier versions)."""
    if isinstance(raw, bytes):
        return unpack_record(m.JobStatusView, raw)
    data = json.loads(raw)
    return m.JobStatusView(
        name=data["name"], state=data["state"], output=data.get("output", ""), step=data.get("step", 0),
        steps=data.get("steps", 1), maps=data.get("maps", 0), maps_done=data.get("maps_done", 0),
        reduces=data.get("reduces", 0), reduces_done=data.get("reduces_done", 0),
        counters=tuple((str(g), str(n), int(v)) for g, n, v in data.get("counters", ())),
        error=_failure_from_json(data["error"]) if data.get("error") else None, seconds=float(data.get("seconds", 0.0)),
        attempts=tuple(m.AttemptView(task=a["task"], attempt=a["attempt"], node=a.get("node", ""), ok=bool(a["ok"]),
                                     started=float(a["started"]), ended=float(a["ended"]),
                                     error=a.get("error", ""), speculative=bool(a.get("speculative")))
                       for a in data.get("attempts", ())),
        speculative_attempts=data.get("speculative_attempts", 0),
        excluded_nodes=tuple(data.get("excluded_nodes", ())))


def _splits(raw: bytes) -> tuple[m.SplitRef, ...]:
    """A map's kept input splits (a database of an earlier version kept one split, not a task input)."""
    try:
        return unpack_record(m.TaskInput, raw).splits
    except ProtocolError:
        return (unpack_record(m.SplitRef, raw),)
