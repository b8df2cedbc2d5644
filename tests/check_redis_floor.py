"""Run the Redis-facing tests against the oldest redis-py that pyproject.toml allows.

The ``redis>=X`` floor is a promise to people who pin an older client: this installs
exactly ``redis==X`` (with its own dependencies) into a temporary directory, puts it in
front of the environment's newer one, checks that it is the one imported, and runs the
stream, RESP, mux and worker tests with it (their subprocesses inherit the path).

    python tests/check_redis_floor.py [extra pytest args]

Exits with pytest's status; 2 when the floor cannot be read or installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/test_resp.py",
    "tests/test_resp_internals.py",
    "tests/test_streams.py",
    "tests/test_mux.py",
    "tests/test_checkpoint.py",
    "tests/test_worker.py",
    "tests/test_asr_first_chunk.py",
]


def redis_floor() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        # ``redis>=X`` with an optional upper bound (``,<N``: the private internals the
        # hand-packed layer uses are checked by tests/test_resp_internals.py)
        if match := re.fullmatch(r"redis>=([0-9.]+)(,<[0-9.]+)?", requirement.replace(" ", "")):
            return match.group(1)
    raise SystemExit("pyproject.toml: no 'redis>=X' dependency to test")


def main() -> int:
    floor = redis_floor()
    with tempfile.TemporaryDirectory(prefix="redis-floor-") as target:
        install = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", target, f"redis=={floor}"],
            capture_output=True,
            text=True,
        )
        if install.returncode != 0:
            print(f"could not install redis=={floor}: {install.stderr.strip()[-500:]}")
            return 2
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([target, str(ROOT)])}
        probe = "import redis, sys; sys.stdout.write(redis.__version__)"
        imported = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True
        ).stdout
        if imported != floor:
            print(f"expected redis {floor} first on the path, imported {imported!r}")
            return 2
        print(f"running {len(TESTS)} test files against redis-py {floor}", flush=True)
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS, *sys.argv[1:]],
            cwd=ROOT,
            env=env,
        )
        return tests.returncode


if __name__ == "__main__":
    sys.exit(main())
