"""What a job's run shows on the command line: progress as it runs, and its outcome at the end.

:class:`ProgressView` draws a bar per phase on a terminal (tasks done, running and failed, input bytes
read, elapsed time and an estimate), or, piped, one plain line per change. :func:`report` prints the end:
the counters of a job that succeeded, or the failing task, its input range, node, traceback and what it
printed. :func:`note_unsplittable` says so before the run when compressed inputs will each keep one core
busy alone.
"""

from __future__ import annotations

import time

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dynamr.cli.common import console, err_console
from dynamr.mapreduce.compressed import unsplittable_note
from dynamr.mapreduce.jobrun import JobPlan
from dynamr.mapreduce.splits import LINE_FORMATS, REPLACED
from dynamr.rpc import messages as m
from dynamr.units import format_duration, format_size

#: lines of a failed attempt's output shown with the failure (all of it: 'dynamr logs')
OUTPUT_LINES = 40


class ProgressView:
    """A job's progress as it runs: on a terminal, a bar per phase (the maps and the reduces of each step)
    with tasks done, running and failed, bytes read, elapsed time and an estimate of what is left; piped,
    one plain line each time a phase's counts change (at most one a second per phase, and always its
    last)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
            disable=not console.is_terminal)
        self.tasks: dict[tuple[int, str], TaskID] = {}
        self._printed: dict[tuple[int, str], tuple[tuple[int, ...], float]] = {}
        self._started = time.monotonic()
        #: seconds between status requests: a bar moves smoothly; piped lines come at most once a second
        #: (the coordinator answers at once when the job ends, whatever the interval)
        self.interval = 0.2 if console.is_terminal else 1.0

    def __call__(self, status: m.JobStatusView) -> None:
        for phase in status.phases:
            key = (phase.step, phase.kind)
            counts = phase_counts(phase)
            by_bytes = phase.bytes > 0
            total, done = (phase.bytes, phase.bytes_read) if by_bytes else (phase.tasks, phase.done)
            if console.is_terminal:
                if key not in self.tasks:
                    if not (phase.running or phase.done or phase.failed):
                        continue  # not begun: shown once it starts
                    self.tasks[key] = self.progress.add_task(
                        f"step {phase.step + 1}/{status.steps} {phase.kind}", total=total, counts=counts)
                self.progress.update(self.tasks[key], total=total, completed=done, counts=counts)
            else:
                self._line(status, phase, counts)

    def _line(self, status: m.JobStatusView, phase: m.PhaseView, counts: str) -> None:
        key = (phase.step, phase.kind)
        state = (phase.done, phase.running, phase.failed, phase.bytes_read)
        previous = self._printed.get(key)
        now = time.monotonic()
        if previous is None and not (phase.running or phase.done or phase.failed):
            return
        if previous is not None and (previous[0] == state or (now - previous[1] < 1.0 and phase.done < phase.tasks)):
            return
        self._printed[key] = (state, now)
        console.print(f"{status.name}: step {phase.step + 1}/{status.steps} {phase.kind}: {counts}; "
                      f"{format_duration(now - self._started)}", highlight=False, soft_wrap=True)


def phase_counts(phase: m.PhaseView) -> str:
    text = f"{phase.done}/{phase.tasks} done, {phase.running} running"
    if phase.failed:
        text += f", {phase.failed} failed"
    if phase.bytes:
        text += f", {format_size(phase.bytes_read)} of {format_size(phase.bytes)} read"
    return text


def note_unsplittable(plan: JobPlan) -> None:
    if plan.input_format in LINE_FORMATS and (note := unsplittable_note(plan.inputs, plan.split_size)):
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def report(status: m.JobStatusView) -> None:
    replaced = sum(value for group, name, value in status.counters if (group, name) == REPLACED)
    if replaced:
        err_console.print(f"[yellow]warning:[/] {replaced:,} byte(s) of input were not valid in the job's "
                          "INPUT_ENCODING (utf-8 unless set) and were read as U+FFFD; set INPUT_ENCODING "
                          "(for example 'latin-1'), or INPUT_FORMAT = 'bytes' for binary records",
                          highlight=False, soft_wrap=True)
    if status.state == "succeeded":
        console.print(f"[green]job {status.name} succeeded[/] in {status.seconds:.2f}s: {status.maps} "
                      f"map and {status.reduces} reduce task(s); output in {status.output}", highlight=False)
        if status.counters:
            table = Table("group", "counter", "value", title="counters")
            for group, name, value in status.counters:
                table.add_row(group, name, f"{value:,}")
            console.print(table)
        return
    if status.state == "killed":
        err_console.print(f"[bold red]job {status.name} killed[/] after {status.seconds:.1f}s: its tasks are "
                          "stopped and its intermediate data deleted", highlight=False)
        return
    error = status.error or m.JobFailure()
    split = error.input
    where = f" on {split.path} bytes {split.start}-{split.end}" if split else ""
    err_console.print(f"[bold red]job {status.name} {status.state}[/]: task {error.task or '?'}"
                      f"{where}, attempt {error.attempt or '?'} on node {error.node or '?'}:", highlight=False)
    err_console.print(error.traceback or error.error, markup=False, highlight=False)
    if error.output:
        lines = error.output.rstrip("\n").splitlines()
        shown = lines[-OUTPUT_LINES:]
        more = f" (its last {len(shown)} lines; 'dynamr logs {status.name} {error.task.split('/', 1)[-1]}' " \
               "shows all that was kept)" if len(lines) > len(shown) else ""
        err_console.print(f"[bold]what the attempt printed[/]{more}:", highlight=False, soft_wrap=True)
        err_console.print("\n".join(shown), markup=False, highlight=False, soft_wrap=True)
