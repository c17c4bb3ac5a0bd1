"""What the small-job benchmarks share: a local cluster of three nodes with four tiny files in its store,
and one word count over them, checked."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dynamr.config import StoreSettings
from dynamr.files.client import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.mapreduce.submit import JobClient, build_plan
from dynamr.rpc.messages import JobStatusView
from dynamr.store.client import Client

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "examples" / "wordcount.py"


@dataclass
class SmallJobs:
    cluster: LocalCluster
    client: Client
    fs: FileSystem
    jobs: JobClient

    def run(self, name: str) -> JobStatusView:
        """Run a word count as job ``name`` into /out/NAME; its status once it succeeded (else exit)."""
        client, fs = self.client, self.fs
        plan = client.run(build_plan(fs, name, JOB, ["/in"], f"/out/{name}", local=False, reducers=2))
        client.run(self.jobs.submit(name, plan, JOB.read_bytes()))
        status: JobStatusView = client.run(self.jobs.wait(name))
        if status.state != "succeeded":
            raise SystemExit(f"job {name} {status.state}: {status.error}")
        parts = [e.name for e in client.run(fs.ls(f"/out/{name}")) if e.name.startswith("part-")]
        output = b"".join(client.run(fs.read_bytes(f"/out/{name}/{part}")) for part in parts)
        if output.count(b"\n") != 7:  # alpha, beta, gamma and the four numbers
            raise SystemExit(f"job {name} wrote {output!r}")
        return status


@contextmanager
def small_jobs(prefix: str) -> Iterator[SmallJobs]:
    """Three nodes and a coordinator (default settings) with /in holding four files of 50 short lines."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i in range(4):
            (folder / f"f{i}.txt").write_text(f"alpha beta gamma {i}\n" * 50)
        cluster = LocalCluster.create(Path(tmp) / "cluster", 3, StoreSettings(), ephemeral=True)
        cluster.start()
        try:
            with Client(cluster.seeds, cluster.secret, timeout=60) as client:
                fs = FileSystem(client.async_client)
                client.run(fs.put_tree(folder, "/in"))
                yield SmallJobs(cluster, client, fs, JobClient(client.async_client))
        finally:
            cluster.stop()
