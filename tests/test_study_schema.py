"""Schema-driven fuzzing of the study and A/B endpoints: schemathesis against a server started with
``--study`` and ``--ab`` (the plain server is covered by test_serve_schema.py). No 5xx, every answer as
documented, no traceback in the server log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("schemathesis", reason="schemathesis (test extra) is not installed")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from superres.serve.launch import ServerProcess  # noqa: E402

ARGS = ["--checks", "all", "--exclude-checks", "positive_data_acceptance", "-n", "8", "--seed", "1",
        "--workers", "1", "--request-timeout", "60", "--no-color"]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[ServerProcess]:
    from superres.study.create import create_study

    base = tmp_path_factory.mktemp("study-schema")
    img = data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"
    create_study(base / "study", ["bicubic", "bicubic+jpeg10"], [img])
    env = {
        "SUPERRES_SERVE_TMP_DIR": str(base / "tmp"),
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "superres-cache"),
        "SUPERRES_SERVE_MAX_BYTES": str(1 << 20),
        "SUPERRES_SERVE_QUEUE_LENGTH": "64",
        "SUPERRES_SERVE_MAX_OUTPUT_PIXELS": str(1 << 20),
    }
    args = ["--models", "espcn-s-x4", "--study", str(base / "study"), "--ab", "candidate=espcn-m-x4:0.3"]
    with ServerProcess(args, env=env, log_path=base / "server.log") as s:
        yield s
        assert s.alive(), s.log()


def test_schemathesis_finds_no_error_in_study_and_ab_endpoints(server: ServerProcess, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", server.url + "/openapi.json", *ARGS]
    run = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "No issues found" in out and re.search(r"(\d+) generated, \1 passed", out), out[-3000:]
    import json
    import urllib.request

    with urllib.request.urlopen(server.url + "/openapi.json") as r:
        paths = set(json.load(r)["paths"])
    assert {"/v1/study", "/v1/study/next", "/v1/study/vote", "/v1/ab", "/v1/ab/rating"} <= paths, paths
    assert "Traceback" not in server.log(), server.log()
