"""Schema-driven fuzzing: schemathesis generates requests from the server's own OpenAPI spec (valid and
invalid multipart bodies, path ids, ...) against a real server process. No request may cause a 5xx, and
every answer must be one the spec documents, with the documented content type and body schema."""

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

from superres.serve.launch import ServerProcess

EXAMPLES = 30  # per operation and phase: ~550 requests in ~10 s, bounded and seeded
# Every check except positive_data_acceptance: the spec can only say the file is binary, so schema-valid
# random bytes are (rightly) refused with 415, which that check counts as a failure.
ARGS = [
    "--checks",
    "all",
    "--exclude-checks",
    "positive_data_acceptance",
    "-n",
    str(EXAMPLES),
    "--seed",
    "1",
    "--workers",
    "1",
    "--request-timeout",
    "60",
    "--no-color",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("serve-schema")
    env = {
        "SUPERRES_SERVE_TMP_DIR": str(base / "tmp"),
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "superres-cache"),
        "SUPERRES_SERVE_MAX_BYTES": str(1 << 20),
        "SUPERRES_SERVE_QUEUE_LENGTH": "64",
        "SUPERRES_SERVE_MAX_OUTPUT_PIXELS": str(1 << 20),
    }
    with ServerProcess(["--models", "realesr-animevideov3"], env=env, log_path=base / "server.log") as s:
        s.tmp = base / "tmp"  # type: ignore[attr-defined]
        yield s
        assert s.alive(), s.log()


def test_schemathesis_finds_no_server_error(server: ServerProcess, tmp_path: Path) -> None:
    """schemathesis (its CLI: its pytest plugin does not load under this pytest) runs the coverage,
    fuzzing and stateful phases; no 5xx, and every answer as documented."""
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
    summary = out[out.find("SUMMARY") :] if "SUMMARY" in out else out[-3000:]
    print(summary)
    assert run.returncode == 0, out[-6000:]
    assert "No issues found" in out and re.search(r"(\d+) generated, \1 passed", out), summary
    assert "Traceback" not in server.log(), server.log()
    tmp: Path = server.tmp  # type: ignore[attr-defined]
    assert [p.name for p in tmp.iterdir() if p.name.startswith("upload-")] == []
