"""Server settings: defaults that keep a server safe, environment variables, flags winning over them,
and one-line errors naming the bad variable or flag."""

from __future__ import annotations

import pytest

pytest.importorskip("pydantic", reason="pydantic is needed for the server settings")

from superres.errors import SuperresError
from superres.serve.settings import load_settings


def test_defaults_bind_loopback_and_bound_everything() -> None:
    s = load_settings(environ={})
    assert s.host == "127.0.0.1" and s.port == 8000 and s.models == []
    assert s.max_bytes > 0 and s.sync_max_pixels <= s.max_pixels and s.queue_length >= 0 and s.job_ttl > 0


def test_environment_then_flags() -> None:
    env = {
        "SUPERRES_SERVE_MAX_BYTES": "1000",
        "SUPERRES_SERVE_MODELS": "a, b,,c",
        "SUPERRES_SERVE_PORT": "9000",
        "SUPERRES_SERVE_JOB_TTL": "2.5",
        "SUPERRES_SERVE_TILE": "",
    }
    s = load_settings(environ=env)
    assert (s.max_bytes, s.models, s.port, s.job_ttl, s.tile) == (1000, ["a", "b", "c"], 9000, 2.5, None)
    s = load_settings({"max_bytes": 5, "port": None, "models": "x"}, environ=env)
    assert (s.max_bytes, s.port, s.models) == (5, 9000, ["x"])


@pytest.mark.parametrize(
    ("env", "flag"),
    [
        ({"SUPERRES_SERVE_MAX_BYTES": "lots"}, "--max-bytes / SUPERRES_SERVE_MAX_BYTES"),
        ({"SUPERRES_SERVE_CONCURRENT_JOBS": "0"}, "--concurrent-jobs / SUPERRES_SERVE_CONCURRENT_JOBS"),
        ({"SUPERRES_SERVE_PORT": "70000"}, "--port / SUPERRES_SERVE_PORT"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], flag: str) -> None:
    with pytest.raises(SuperresError, match="invalid server settings") as e:
        load_settings(environ=env)
    assert flag in str(e.value) and "\n" not in str(e.value)


def test_server_start_splits_the_memory_share_among_its_inference_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """N inference threads may each run a banded whole-image pass (DAT, the SE U-Nets) planned on the same free
    memory, so starting the server makes each take 1/N of the share."""
    pytest.importorskip("fastapi", reason="the server needs the serve extra")
    from fastapi.testclient import TestClient

    from superres.inference import devices
    from superres.serve.app import create_app

    monkeypatch.setattr(devices, "_CONCURRENT_PASSES", 1)
    with TestClient(create_app(load_settings({"concurrent_jobs": 3, "models": "span-x2"}, environ={}))):
        assert devices._CONCURRENT_PASSES == 3 and devices.memory_share(0.5) == pytest.approx(0.5 / 3)
