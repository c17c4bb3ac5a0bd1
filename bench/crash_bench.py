"""Run the MIT 6.5840-style crash test (tests/integration/crashloop.py) many times on fresh clusters.

    python bench/crash_bench.py --runs 20

Each run: 3 real node processes plus the coordinator on 127.0.0.1, a word count whose map and reduce calls
kill their own node (SIGKILL) with probability --crash, every dead node restarted at once. A run passes when
the job succeeds, its output equals the sequential count, and no intermediate key is left. Run from the
project's root.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.integration.conftest import FAST
from tests.integration.crashloop import crash_run

from dynamr.config import StoreSettings
from dynamr.localcluster import LocalCluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--crash", type=float, default=0.2, help="chance that a map or reduce call kills its node")
    parser.add_argument("--no-zygote", action="store_true", help="start task processes as new interpreters")
    args = parser.parse_args()
    passed = 0
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="dynamr-crash-") as tmp:
            settings = StoreSettings.from_dict({**FAST, "n": 3, "r": 2, "w": 2, "task_slots": 2,
                                                "worker_timeout": 2.0, "speculative_after": 2.0,
                                                "task_zygote": not args.no_zygote})
            cluster = LocalCluster.create(Path(tmp) / "cluster", 3, settings, ephemeral=True)
            cluster.start()
            began = time.monotonic()
            try:
                result = crash_run(cluster, Path(tmp), crash=args.crash)
                deadline = time.monotonic() + 60
                while any(result["keys"]().values()) and time.monotonic() < deadline:
                    time.sleep(0.5)
                clean = not any(result["keys"]().values())
            finally:
                cluster.stop()
            ok = result["output_ok"] and clean and result["error"] is None
            passed += ok
            print(f"run {run:2d}: {'ok' if ok else 'FAILED'} in {time.monotonic() - began:5.1f}s, "
                  f"{result['restarts']} node restart(s), state {result['status'].state}, "
                  f"output {'right' if result['output_ok'] else 'WRONG'}, "
                  f"{'no key left' if clean else 'KEYS LEFT'}", flush=True)
            if result["status"].error is not None:
                print(f"        {result['status'].error.error}", flush=True)
    print(f"{passed} of {args.runs} runs passed")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
