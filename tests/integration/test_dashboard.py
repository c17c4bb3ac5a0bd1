"""The dashboard and /metrics (issue 15), as a user and a Prometheus server meet them: a real coordinator and
real nodes, pages driven in Debian's Chromium by Playwright (skipped with a reason where either is missing).

Screenshots: with DYNAMR_SCREENSHOTS=DIR set, the browser test saves the cluster page and a job's timeline
there (docs/ holds the committed ones)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dynamr.client import Client
from dynamr.localcluster import LocalCluster
from dynamr.web.token import web_token
from tests.helpers import dynamr, wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import job_status, start_slow_wordcount, submit, wait_for_job
from tests.integration.test_task_logs import NOISY_JOB
from tests.mrdata import write_corpus

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _url(cluster: LocalCluster, path: str = "/", node: str = "coordinator") -> str:
    address = cluster.spec.coordinator if node == "coordinator" else cluster.spec.node(node)
    assert address is not None and address.http_port
    return f"http://{address.host}:{address.http_port}{path}"


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metrics(cluster: LocalCluster, node: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = _get(_url(cluster, "/metrics", node), web_token(cluster.secret))
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, labels[k]) in ls for k in labels))


def test_metrics_parse_and_move_while_a_job_runs_and_need_the_token(make_cluster: MakeCluster,
                                                                     tmp_path: Path) -> None:
    cluster = make_cluster(3, http=True, task_slots=2)
    for node in ("coordinator", "n1"):
        assert _get(_url(cluster, "/metrics", node))[0] == 401
        assert _get(_url(cluster, "/metrics", node), "x" * 40)[0] == 401
        assert _get(_url(cluster, f"/metrics?token={'0' * 40}", node))[0] == 401
    before = {node: _metrics(cluster, node) for node in ("coordinator", "n1", "n2", "n3")}
    files = start_slow_wordcount(cluster, tmp_path, "wc-metrics", [4000, 4000, 4000, 4000], map_seconds=1.0,
                                 reduce_seconds=0, reducers=2, split_size=8000)
    # while it runs, a scrape sees attempts running and requests counted
    wait_until(lambda: _total(_metrics(cluster, "coordinator"), "dynamr_attempts_running") > 0, 60,
               "the coordinator's metrics to show running attempts")
    status = wait_for_job(cluster, "wc-metrics", 120)
    assert status.state == "succeeded"
    after = {node: _metrics(cluster, node) for node in ("coordinator", "n1", "n2", "n3")}
    coordinator = after["coordinator"]
    assert _total(coordinator, "dynamr_task_attempts_total", kind="map", outcome="ok") >= status.maps
    assert _total(coordinator, "dynamr_task_attempts_total", kind="reduce", outcome="ok") >= 2
    assert _total(coordinator, "dynamr_jobs", state="succeeded") == 1
    assert _total(coordinator, "dynamr_shuffle_bytes_total") > 0
    assert _total(coordinator, "dynamr_requests_total", type="WorkerHeartbeat") > \
        _total(before["coordinator"], "dynamr_requests_total", type="WorkerHeartbeat")
    for node in ("n1", "n2", "n3"):
        moved = _total(after[node], "dynamr_requests_total") - _total(before[node], "dynamr_requests_total")
        assert moved > 0, node
        assert _total(after[node], "dynamr_request_seconds_count") == _total(after[node], "dynamr_requests_total")
        assert _total(after[node], "dynamr_keys", node=node) >= 0
    # the built-in counters, checked against what the job read and wrote
    counters = {name: value for group, name, value in status.counters if group == "dynamr"}
    found = [w for f in files for w in re.findall(r"[a-z0-9']+", f.read_text().lower())]
    words = len(found)
    assert counters["map input bytes"] == sum(f.stat().st_size for f in files)
    assert counters["map input records"] == sum(len(f.read_text().splitlines()) for f in files)
    assert counters["map output records"] == counters["combine input records"] == words
    assert 0 < counters["combine output records"] < words
    assert counters["shuffle bytes"] > 0 and counters["reduce input bytes"] == counters["shuffle bytes"]
    assert counters["reduce output records"] == len(set(found))
    assert counters["output bytes"] > 0


def test_dynamr_dashboard_prints_a_url_that_opens_the_pages(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3, http=True)
    url = dynamr("dashboard", "--dir", str(cluster.root), cwd=tmp_path).stdout.strip()
    assert url.startswith(_url(cluster, "/?token="))
    assert url.endswith(web_token(cluster.secret))
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    with pytest.raises(urllib.error.HTTPError) as redirected:  # the token becomes a private cookie...
        urllib.request.build_opener(NoRedirect()).open(url, timeout=30)
    assert redirected.value.code == 302 and redirected.value.headers["Location"] == "/"
    cookie = redirected.value.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(url, timeout=30) as response:  # ...and the page follows without the token in its address
        page = response.read().decode()
        assert response.url == _url(cluster, "/")
        assert response.headers["Referrer-Policy"] == "no-referrer" and "frame-ancestors 'none'" in \
            response.headers["Content-Security-Policy"]
    assert "3 of 3" in page and "Ring ownership" in page
    denied = _get(_url(cluster, "/jobs"))
    assert denied[0] == 401 and "dynamr dashboard" in denied[1]
    status, page = _get(_url(cluster, "/jobs/nosuch"), web_token(cluster.secret))
    assert status == 404 and "No job named" in page
    status, page = _get(_url(cluster, "/jobs/%3Cscript%3E"), web_token(cluster.secret))
    assert status == 404 and "<script>" not in page and "&lt;script&gt;" in page


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium; 'apt-get install chromium')")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright)")
    with sync_playwright() as play:
        launched = play.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            yield launched
        finally:
            launched.close()


def _open(browser: Any, cluster: LocalCluster, path: str, errors: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.goto(_url(cluster, f"{path}?token={web_token(cluster.secret)}"))
    return page


def test_pages_load_and_follow_a_running_job_and_show_a_failure(make_cluster: MakeCluster, tmp_path: Path,
                                                                browser: Any) -> None:
    cluster = make_cluster(3, http=True, task_slots=2)
    shots = os.environ.get("DYNAMR_SCREENSHOTS")
    errors: list[str] = []

    page = _open(browser, cluster, "/", errors)
    page.wait_for_selector("#live-badge.live", timeout=30_000)  # the event stream is connected
    assert page.locator("text=3 of 3").count() == 1 and page.locator("svg.ownership rect").count() == 3
    if shots:
        page.screenshot(path=str(Path(shots) / "dashboard-cluster.png"), full_page=True)

    files = start_slow_wordcount(cluster, tmp_path / "slow", "wc-live", [6000] * 6, map_seconds=1.5,
                                 reduce_seconds=0.5, reducers=2, split_size=6000)
    wait_until(lambda: job_status(cluster, "wc-live").running > 0, 60, "a task of wc-live to run")
    page = _open(browser, cluster, "/jobs/wc-live", errors)
    page.wait_for_selector("svg.timeline rect.attempt.running", timeout=30_000)
    done_at_first = page.locator("svg.timeline rect.attempt.ok").count()
    # without a reload, the page follows the job: bars turn green as attempts succeed, then it ends
    ok_bars = page.locator("svg.timeline rect.attempt.ok")
    wait_until(lambda: ok_bars.count() > done_at_first, 60, "the open page to show more attempts succeeded")
    page.wait_for_selector("#live-badge:text('final')", timeout=90_000)
    assert page.locator(".card .state.succeeded").count() == 1
    assert page.locator("svg.timeline rect.attempt.ok").count() >= 8  # 6 maps and 2 reduces at least
    counters = {n: v for g, n, v in job_status(cluster, "wc-live").counters if g == "dynamr"}
    assert counters["map input bytes"] == sum(f.stat().st_size for f in files)  # splits cut files in two
    if shots:
        page.screenshot(path=str(Path(shots) / "dashboard-job.png"), full_page=True)

    jobs = _open(browser, cluster, "/jobs", errors)
    jobs.wait_for_selector("a[href='/jobs/wc-live']", timeout=30_000)

    folder = tmp_path / "bad"
    write_corpus(folder, [3000])
    with (folder / os.listdir(folder)[0]).open("a") as f:
        f.write("\nthe POISON pill\n")
    with Client(cluster.seeds, cluster.secret) as client:
        client.files().put_tree(folder, "/bad")
    job_file = tmp_path / "noisy.py"
    job_file.write_text(NOISY_JOB)
    submit(cluster, "noisy", job_file, ["/bad"], "/out-bad", reducers=1, split_size=1 << 20)
    assert wait_for_job(cluster, "noisy", 120).state == "failed"
    failed = _open(browser, cluster, "/jobs/noisy", errors)
    failed.wait_for_selector(".failure", timeout=30_000)
    text = failed.inner_text("main")
    assert "ValueError: cannot digest 'the POISON pill'" in text and 'noisy.py", line 14, in mapper' in text
    assert "about to fail on 'the POISON pill'" in text and "a child process speaks" in text
    assert failed.locator("svg.timeline rect.attempt.failed").count() == 4
    assert errors == [], errors


def test_json_of_a_job_and_the_page_agree(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(1, http=True, n=1, r=1, w=1)
    start_slow_wordcount(cluster, tmp_path, "agree", [2000, 2000], map_seconds=0, reduce_seconds=0, reducers=1)
    wait_for_job(cluster, "agree", 60)
    shown = json.loads(dynamr("status", "agree", "--json", "--dir", str(cluster.root), cwd=tmp_path).stdout)
    status, page = _get(_url(cluster, "/jobs/agree"), web_token(cluster.secret))
    assert status == 200
    assert f"{shown['maps_done']}/{shown['maps']}" in page and time.strftime("%Y") in _get(
        _url(cluster, "/jobs"), web_token(cluster.secret))[1]


def test_a_finished_job_whose_status_is_no_longer_kept_is_still_listed_shown_and_counted(
        make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(1, http=True, n=1, r=1, w=1, job_statuses_kept=1)
    start_slow_wordcount(cluster, tmp_path, "first", [2000, 2000], map_seconds=0, reduce_seconds=0, reducers=1)
    assert wait_for_job(cluster, "first", 60).state == "succeeded"
    submit(cluster, "second", tmp_path / "slowcount.py", ["/in"], "/out2", reducers=1)
    assert wait_for_job(cluster, "second", 60).state == "succeeded"
    first = job_status(cluster, "first")  # read back from the coordinator's disk
    assert first.state == "succeeded" and first.maps == first.maps_done == 2
    assert sorted(a.task for a in first.attempts if a.ok) == ["first/s0-m0", "first/s0-m1", "first/s0-r0"]
    listed = dynamr("jobs", "--dir", str(cluster.root), cwd=tmp_path).stdout
    assert "first" in listed and "second" in listed
    token = web_token(cluster.secret)
    page = _get(_url(cluster, "/jobs"), token)[1]
    assert "/jobs/second" in page and "/jobs/first" not in page and "1 older finished job(s)" in page
    assert _get(_url(cluster, "/jobs/first"), token)[0] == 200
    assert _total(_metrics(cluster, "coordinator"), "dynamr_jobs", state="succeeded") == 2
    refused = dynamr("status", "nosuchjob", "--dir", str(cluster.root), cwd=tmp_path, check=False)
    assert refused.returncode != 0 and "no job named 'nosuchjob'" in refused.stderr
