"""Schema-driven fuzzing of the study and A/B endpoints: schemathesis against a server started with
``--study`` and ``--ab`` (the plain server is covered by test_serve_schema.py). No 5xx, every answer as
documented, no traceback in the server log."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("schemathesis", reason="schemathesis (test extra) is not installed")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from schema_fuzz import run_schemathesis  # noqa: E402 - tests/schema_fuzz.py
from superres.serve.launch import ServerProcess  # noqa: E402

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[ServerProcess]:
    from superres.study.create import create_study
    from superres.study.store import Limits

    base = tmp_path_factory.mktemp("study-schema")
    img = data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"
    # every fuzzed request comes from one address: the per-address rater cap (3 by default, its own test in
    # test_study_security.py) would answer most of /v1/study/rater with 429 and hide the rest of the contract
    create_study(base / "study", ["bicubic", "bicubic+jpeg10"], [img], limits=Limits(raters_per_address=500))
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
        s.study = base / "study"  # type: ignore[attr-defined]
        yield s
        assert s.alive(), s.log()


def test_schemathesis_finds_no_error_in_study_and_ab_endpoints(server: ServerProcess, tmp_path: Path) -> None:
    # as the study owner, so the vote export is exercised too (without the token: 401, see
    # test_study_security.py)
    owner = (Path(server.study) / "owner.token").read_text().strip()  # type: ignore[attr-defined]
    # a real pair for the image route: its token is server-issued and unguessable, so schemathesis can
    # reach the route's own logic only with one made here (its links do not always get there from
    # /v1/study/rater -> /v1/study/next within 8 examples); the rest of its values it still generates
    import json
    import urllib.request

    def post(path: str, body: dict[str, str] | None = None) -> dict[str, str]:
        req = urllib.request.Request(server.url + path, data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    pair = post("/v1/study/next", {"rater": post("/v1/study/rater")["rater"]})["pair"]
    (tmp_path / "schemathesis.toml").write_text(
        '[[operations]]\ninclude-path = "/v1/study/image/{token}/{side}"\n'
        f'parameters = {{ "path.token" = "{pair}" }}\n')
    run_schemathesis(server.url, tmp_path, 8, extra=["-H", f"Authorization: Bearer {owner}"])

    with urllib.request.urlopen(server.url + "/openapi.json") as r:
        paths = set(json.load(r)["paths"])
    assert {"/v1/study", "/v1/study/next", "/v1/study/vote", "/v1/ab", "/v1/ab/rating"} <= paths, paths
    assert "Traceback" not in server.log(), server.log()
