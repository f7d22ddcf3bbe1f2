"""numpy's BLAS pool is held to one thread in a server process (its spinning workers cost a core)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json
from threadpoolctl import threadpool_info
import numpy
before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
from callgate.providers.threads import limit_blas_threads
limit_blas_threads()
limit_blas_threads()  # a second call changes nothing
after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
print(json.dumps({"before": before, "after": after}))
"""


def test_limit_blas_threads_leaves_one_thread() -> None:
    # A fresh process: the limit is process-wide, and a test process may have set it already.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "", "OMP_NUM_THREADS": ""}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, env=env)
    threads = json.loads(out.stdout)
    assert threads["before"], "numpy's BLAS library was not found"
    if (os.cpu_count() or 1) > 1:
        assert max(threads["before"]) > 1  # what the limit is for: one BLAS thread per core by default
    assert threads["after"] == [1] * len(threads["before"])
