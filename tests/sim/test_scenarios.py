"""Named scenarios of the control plane, each a seeded simulation with one fault placed where it hurts.

Each was a way the coordinator hung, lost or corrupted work before it became a state machine (issue 11);
each fails when the rule that handles it is taken out of :mod:`dynamr.mapreduce.control` (checked by hand
for each, see docs/design.md). Replay any of them with ``python -m tests.sim.run``-style tracing by calling
``World(seed, scenario).run()`` and printing ``world.trace``.
"""

from __future__ import annotations

import dataclasses

import pytest

from dynamr.mapreduce import protocol as p
from dynamr.mapreduce.control import CoordinatorCore
from dynamr.mapreduce.corestate import CoreSettings
from dynamr.mapreduce.jobrun import JobPlan, StepPlan
from tests.sim.scenarios import crashes, crashes_reuse
from tests.sim.world import Faults, Scenario, Violation, World

SEED = 11


def run(scenario: Scenario, seed: int = SEED, janitor: bool = False) -> World:
    """Each named scenario runs without the coordinator's janitor (unless ``janitor``), and so without
    writes landing after every sweep: what it shows must hold by its own rule, not because the janitor
    deleted what the rule left behind."""
    if not janitor:
        scenario = dataclasses.replace(scenario, janitor=0.0,
                                       faults=dataclasses.replace(scenario.faults, very_late=0.0))
    world = World(seed, scenario).run()
    world.check()
    return world


def lines(world: World, text: str) -> list[str]:
    return [line for line in world.trace if text in line]


def test_a_commit_write_that_fails_once_is_retried_and_the_job_ends() -> None:
    world = run(Scenario(jobs=1, once={"commit_fail": 1}))
    assert lines(world, "FAULT commit_fail")
    assert lines(world, "FINALIZED j0 succeeded")
    assert not world.reruns  # the task that had finished was not run again: its commit was retried


def test_every_commit_write_failing_at_first_still_ends_every_job() -> None:
    run(Scenario(jobs=3, once={"commit_fail": 25}))


def test_a_lost_reply_that_carried_an_assignment_does_not_leave_a_phantom_attempt() -> None:
    scenario = Scenario(jobs=1, once={"drop_assignment": 1},
                        settings=CoreSettings(node_timeout=600.0, speculative=False), deadline=60.0)
    world = run(scenario)  # a node that keeps polling is never timed out: only reconciliation can notice
    assert lines(world, "FAULT drop_assignment")
    assert lines(world, "FINALIZED j0 succeeded")


def test_duplicated_reports_are_counted_once() -> None:
    world = run(Scenario(jobs=2, faults=Faults(duplicate=1.0)))
    assert lines(world, "FINALIZED j0 succeeded") and lines(world, "FINALIZED j1 succeeded")
    # World.check compared the counters summed from the reports with the number of words in the input;
    # and what 'dynamr status' shows lists each attempt once
    for name in ("j0", "j1"):
        attempts = [a.attempt for a in world.durable.jobs[name]["final"].attempts]
        assert len(attempts) == len(set(attempts)), attempts


def test_a_kill_racing_a_commit_finalizes_the_job_once_and_leaves_nothing() -> None:
    scenario = Scenario(jobs=1, once={"kill_on_commit": 1})
    scenario_jobs_killed = dataclasses.replace(scenario)
    world = World(SEED, scenario_jobs_killed)
    world.jobs[0].kill_at = 1000.0  # expected to be killed (by the fault), not to succeed
    world.run().check()
    assert lines(world, "FINALIZED j0 killed")
    assert world.finalized["j0"] == 1
    assert not world.store.intermediate_keys()


def test_a_coordinator_restarted_between_the_commit_write_and_its_acknowledgement() -> None:
    world = run(Scenario(jobs=2, once={"commit_crash": 1}))
    assert lines(world, "BOOT coordinator incarnation 2")
    assert not world.reruns  # the restarted coordinator found the record: the task did not run again
    assert world.finalized == {"j0": 1, "j1": 1}


def test_a_coordinator_restarted_between_a_parts_commit_record_and_its_publication() -> None:
    world = run(Scenario(jobs=2, once={"publish_crash": 1}))
    assert lines(world, "FAULT publish_crash") and lines(world, "BOOT coordinator incarnation 2")
    assert not world.reruns  # the record was found; the restarted coordinator published the part (checked)
    assert world.finalized == {"j0": 1, "j1": 1}


def test_a_part_whose_output_is_lost_before_it_is_published_runs_again() -> None:
    world = run(Scenario(jobs=1, once={"lose_before_publish": 1}))
    lost = lines(world, "LOSE whole output of")
    assert lost
    task = lost[0].rsplit(" ", 1)[1].split("#")[0]
    assert len(lines(world, f"ASSIGN {task}#")) >= 2  # it ran again, and the job's output is right (checked)


def test_a_reduce_cut_off_from_the_coordinator_cannot_rewrite_a_part_after_its_job_ended() -> None:
    """A node pauses with a reduce in flight; the reduce runs again elsewhere and the job ends; when the node
    resumes, the old attempt finishes and writes (as a SIGSTOPped process does). It writes only its own
    object, which is swept: no part file changes after the job was finalized (checked by World.check; 9 of
    2,000 chaos seeds broke that when reduces wrote their part files themselves)."""
    from tests.sim.scenarios import chaos

    world = run(chaos(1782), seed=1782)
    finalized = min(i for i, line in enumerate(world.trace) if "FINALIZED j0" in line)
    assert lines(world, "SUBMIT j0: 1 step(s)")
    assert any(" END j0/s0-r2#" in line and ": ok" in line for line in world.trace[finalized:])


def test_a_node_restarted_faster_than_the_heartbeat_timeout_gets_its_attempts_rerun() -> None:
    scenario = Scenario(jobs=1, nodes=2, settings=CoreSettings(node_timeout=120.0, speculative=False),
                        deadline=60.0, script=[(3.2, "crash_node", ("n1", 0.2)), (3.3, "crash_node", ("n2", 0.2))])
    world = run(scenario)  # done long before the 120 s timeout could have noticed
    assert lines(world, "CRASH node n1")


def test_a_write_of_a_dead_attempt_that_lands_after_its_job_is_cleaned_up_is_swept() -> None:
    """A task process dies with its node, but a store node still lands its last write, after the job's
    cleanup: the late sweep deletes it (the real crash-loop test left such keys on a loaded machine)."""
    scenario = Scenario(jobs=1, nodes=2, two_steps=False, faults=Faults(node_crash=0.15),
                        settings=CoreSettings(node_timeout=3.0, speculative=False, stop_timeout=8.0,
                                              late_write_grace=5.0))
    world = run(scenario, seed=11892)  # a seed whose fault lands after the cleanup (found by search)
    finalized = min(i for i, line in enumerate(world.trace) if "FINALIZED" in line)
    assert any("lands" in line for line in world.trace[finalized:]), "the fault did not land late"


def test_a_straggler_killed_after_its_job_ended_has_its_late_write_swept() -> None:
    """A paused node's attempt outlives its job; killed when the node resumes, it reports at once, but its
    last write lands after that report (found by the 100,000-seed soak)."""
    from tests.sim.scenarios import chaos

    run(chaos(23404), seed=23404)


def test_a_commit_write_that_lands_after_its_job_was_cleaned_up_is_swept() -> None:
    """A commit write loses its answer and lands seconds later, after the job's cleanup deleted the commit
    records (a replica held it): the late sweep deletes it (found once the world let such writes land late:
    86 of 2,000 chaos seeds left a commit record behind)."""
    from tests.sim.scenarios import chaos

    world = run(chaos(9), seed=9)
    assert world.landed_late


def test_a_commit_write_of_an_earlier_incarnation_that_lands_after_the_cleanup_is_swept() -> None:
    """Commit writes lose their answers, the coordinator dies, and the restarted one finishes the job; one of
    the dead incarnation's writes lands after the cleanup. What lost its answer was not kept across the
    restart, so every attempt that succeeded counts as uncertain: its record is deleted once more later (a
    commit record was left behind before)."""
    scenario = Scenario(jobs=2, faults=Faults(store_timeout=0.2, coord_crash=0.08),
                        settings=CoreSettings(node_timeout=3.0, speculative=False, stop_timeout=8.0,
                                              late_write_grace=5.0))
    world = run(scenario, seed=89)  # found by search; it left commit/j0/j0/s0-r1 behind
    assert lines(world, "BOOT coordinator incarnation 3")


def test_a_deleted_job_s_late_commit_record_is_not_taken_for_the_next_job_of_its_name() -> None:
    """Jobs are killed, deleted and their names reused while commit writes lose their answers and the
    coordinator keeps dying. A record of the deleted job landed after its cleanup; its sweep died with the
    coordinator, as the job had been forgotten, and a restart took the record for a commit of the new job
    of that name: the new job's output lacked a map's words. Now a job is deleted only once swept, and a
    record naming an attempt its job never started is void."""
    world = run(crashes_reuse(0), seed=0)  # found by search: "job j0: output differs from the reference"
    assert lines(world, "REUSE the name j0") and lines(world, "REUSE the name j1")
    assert lines(world, "BOOT coordinator incarnation 3")


def test_a_straggler_s_success_report_deletes_its_output_at_once() -> None:
    """An attempt of a killed job, on a paused node, outlives its job and reports success. It had been seen
    running after the cleanup, so a delete of its output was waiting for writes in flight; the report did not
    hurry it, and the coordinator died first: the output leaked (found by search)."""
    world = run(crashes(20), seed=20)  # it left out/j1/j1/s0-m7#5/* behind
    assert lines(world, "KILL j1") and lines(world, "BOOT coordinator incarnation 3")


def test_a_job_whose_cleanup_landed_unanswered_before_a_restart_is_not_run_again() -> None:
    """A job succeeded; its cleanup (which deletes the commit records) was applied but its answer lost, and
    the coordinator died before noting the job finalized. The next one found no record and ran the whole job
    again (found by search). Now a job that succeeded is kept as such before its cleanup, and a restart
    finishes the cleanup."""
    world = run(crashes_reuse(583), seed=583)  # it was: "task re-run after it committed: j1/s0-m4#4.4"
    trace = world.trace
    lost = trace.index(lines(world, "store TIMEOUT (applied) cleanup j1")[0])
    boot = trace.index(lines(world, "BOOT coordinator incarnation 2")[0])
    assert lost < boot and "FINALIZE j1 succeeded=True" in trace[boot + 1]


def test_an_output_landing_after_its_job_s_sweep_and_a_restart_is_deleted_by_the_janitor() -> None:
    """A killed job's attempt, on a node paused past the job's cleanup and late sweep, is killed when the
    node comes back; its partial output lands after that, and the coordinator dies before the attempt's
    delete (kept in memory) is carried out. Nothing durable names that output any more; the janitor finds
    it (found by search: "intermediate keys left: out/j0/j0/s0-m7#3.8/0")."""
    world = run(crashes_reuse(4372), seed=4372, janitor=True)
    assert world.janitor_rescued == ["out/j0/j0/s0-m7#3.8/0"]
    with pytest.raises(Violation, match="intermediate keys left"):
        run(crashes_reuse(4372), seed=4372)  # the same run without the janitor


def test_a_partial_output_landing_long_after_every_sweep_is_deleted_by_the_janitor() -> None:
    """A write held by a paused replica lands after the late sweep of its job was done: no rule of the
    core can wait for it, the janitor deletes it."""
    world = run(crashes(50), seed=50, janitor=True)
    assert world.very_late == {"out/j1/j1/s0-m15#2.22/0"} and lines(world, "JANITOR deletes out/j1/j1/s0-m15#2.22/0")
    without = dataclasses.replace(crashes(50), janitor=0.0)
    with pytest.raises(Violation, match="intermediate keys left"):
        World(50, without).run().check()


def test_a_negative_reducer_count_is_refused_with_a_clear_error() -> None:
    core = CoordinatorCore()
    plan = JobPlan(source="/_jobs/j/x/job.py", source_name="job.py", inputs=(("/in/a", 10),), output="/out",
                   steps=(StepPlan(map_only=False, reducers=-1),))
    out = core.handle(p.JobSubmitted("j", plan), 0.0)
    assert out == [p.Refused("j", "step 0: the number of reducers must be 0 or more (0: map only), not -1")]
    assert "j" not in core.jobs  # nothing was kept or persisted


def test_a_refused_duplicate_submission_leaves_the_existing_job_untouched() -> None:
    world = World(SEED, Scenario(jobs=1))
    first = world.jobs[0]
    second = dataclasses.replace(first, plan=dataclasses.replace(first.plan, source="/_jobs/j0/other/job.py"),
                                 submit_at=first.submit_at + 0.5)
    world.jobs.append(second)
    world.run()
    world.jobs.pop()
    world.check()
    assert lines(world, "REFUSED j0: a job named 'j0' already exists")
    assert world.durable.jobs["j0"]["plan"].source == first.plan.source


@pytest.mark.timeout(900)  # about 35 s on an idle 2-core machine
def test_two_thousand_seeds_of_chaos_break_no_invariant() -> None:
    from tests.sim.run import main

    assert main(["--seeds", "0:2000", "--profile", "chaos"]) == 0


@pytest.mark.timeout(600)
def test_frequent_coordinator_crashes_and_lost_answers_break_no_invariant() -> None:
    """The profile whose search found a straggler's output left behind (named scenario above)."""
    from tests.sim.run import main

    assert main(["--seeds", "0:400", "--profile", "crashes"]) == 0


@pytest.mark.timeout(600)
def test_network_faults_alone_break_no_invariant() -> None:
    from tests.sim.run import main

    assert main(["--seeds", "0:300", "--profile", "network"]) == 0


@pytest.mark.timeout(600)
def test_jobs_whose_files_share_map_tasks_break_no_invariant_under_chaos() -> None:
    """Small input files packed into one map task (splits.combine_splits), under every fault at once."""
    from tests.sim.run import main

    assert main(["--seeds", "0:400", "--profile", "chaos-combined"]) == 0
