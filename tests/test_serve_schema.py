"""Schema-driven fuzzing: schemathesis generates requests from the server's own OpenAPI spec (valid and
invalid multipart bodies, path ids, ...) against a real server process. No request may cause a 5xx, and
every answer must be one the spec documents, with the documented content type and body schema."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("schemathesis", reason="schemathesis (test extra) is not installed")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from schema_fuzz import run_schemathesis  # tests/schema_fuzz.py
from superres.serve.launch import ServerProcess

EXAMPLES = 30  # per operation and phase: ~550 requests in ~10 s, bounded and seeded


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
    run_schemathesis(server.url, tmp_path, EXAMPLES)
    assert "Traceback" not in server.log(), server.log()
    tmp: Path = server.tmp  # type: ignore[attr-defined]
    assert [p.name for p in tmp.rglob("upload-*")] == []  # in the server's private folder too
