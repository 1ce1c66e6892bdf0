"""A/B traffic splitting: the split is a deterministic, sticky function of the client id whose share is
the configured one; against a real server every request is answered by its client's version and counted
once per version at /v1/ab, explicit model requests stay out of the experiment, and bad --ab values fail
at start with one line."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="httpx is needed to talk to the server (test extra)")
pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")

from PIL import Image  # noqa: E402

from superres.errors import SuperresError  # noqa: E402
from superres.serve.ab import ABSplit, Variant, parse_ab, served_models  # noqa: E402
from superres.serve.launch import ServerProcess  # noqa: E402

CONTROL, CANDIDATE = "espcn-s-x4", "espcn-m-x4"


def test_parse_ab_accepts_fractions_and_percentages_and_refuses_nonsense() -> None:
    assert parse_ab(["candidate=espcn-m-x4:0.2", "b=x:15%"]) == [
        Variant("candidate", "espcn-m-x4", 0.2),
        Variant("b", "x", 0.15),
    ]
    for bad, why in [
        ("espcn-m-x4:0.2", "NAME=MODEL:SHARE"),
        ("c=m:1.5", "between 0 and 1"),
        ("c=m:0", "between 0 and 1"),
        ("control=m:0.1", "taken"),
    ]:
        with pytest.raises(SuperresError, match=why):
            parse_ab([bad])
    with pytest.raises(SuperresError, match="100% or more"):
        parse_ab(["a=m:0.6", "b=n:0.4"])
    assert served_models(["a"], ["c=b:0.1", "d=b:0.1"]) == ["a", "b"]
    from superres.zoo.choose import served_by_default

    assert served_models([], []) == []  # the pool serves its default set
    assert served_models([], ["c=b:0.1"]) == [*served_by_default(), "b"]  # the default set and the candidate


def test_split_is_sticky_deterministic_and_has_the_configured_share() -> None:
    split = ABSplit("m0", [Variant("a", "m1", 0.1), Variant("b", "m2", 0.3)])
    ids = [f"user-{i}" for i in range(5000)]
    first = [split.assign(i).name for i in ids]
    assert first == [split.assign(i).name for i in ids]  # sticky
    again = ABSplit("m0", [Variant("a", "m1", 0.1), Variant("b", "m2", 0.3)])
    assert first == [again.assign(i).name for i in ids]  # same in another process / after a restart
    for name, share in (("a", 0.1), ("b", 0.3), ("control", 0.6)):
        assert abs(first.count(name) / len(ids) - share) < 0.02, (name, first.count(name))
    # raising a share only moves clients into the candidate, never out of it (a ramp-up keeps people)
    wider = ABSplit("m0", [Variant("a", "m1", 0.2)])
    narrow = ABSplit("m0", [Variant("a", "m1", 0.1)])
    assert all(wider.assign(i).name == "a" for i in ids if narrow.assign(i).name == "a")


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
        buf, "PNG"
    )
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("ab")
    env = {
        "SUPERRES_SERVE_TMP_DIR": str(base / "tmp"),
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "superres-cache"),
        "SUPERRES_SERVE_QUEUE_LENGTH": "64",
    }
    args = ["--models", CONTROL, "--ab", f"candidate={CANDIDATE}:0.3"]
    with ServerProcess(args, env=env, log_path=base / "server.log") as s:
        yield s
        assert s.alive(), s.log()


def test_every_request_goes_to_its_clients_version_and_is_counted_once(server: ServerProcess) -> None:
    split = ABSplit(CONTROL, [Variant("candidate", CANDIDATE, 0.3)])
    clients = [f"client-{i}" for i in range(30)]
    jobs = [(c, k) for k in range(2) for c in clients]
    img = _png(0)

    def one(job: tuple[str, int]) -> tuple[str, int, str, str]:
        cid, _ = job
        r = httpx.post(
            server.url + "/v1/upscale",
            files={"file": ("x.png", img, "image/png")},
            headers={"X-Client-Id": cid},
            timeout=60,
        )
        return (
            cid,
            r.status_code,
            r.headers.get("x-superres-version", ""),
            r.headers.get("x-superres-model", ""),
        )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, jobs))
    assert all(status == 200 for _, status, _, _ in results), results[:5]
    models = {"control": CONTROL, "candidate": CANDIDATE}
    for cid, _, version, model in results:
        assert version == split.assign(cid).name and model == models[version], (cid, version, model)
    # explicit model: served as asked, not part of the experiment
    r = httpx.post(
        server.url + "/v1/upscale",
        files={"file": ("x.png", img, "image/png")},
        data={"model": CANDIDATE},
        headers={"X-Client-Id": "client-0"},
        timeout=60,
    )
    assert r.status_code == 200 and "x-superres-version" not in r.headers
    # a broken upload is the client's fault: counted as rejected, not as an error of the version
    bad = httpx.post(
        server.url + "/v1/upscale",
        files={"file": ("x.png", b"not an image", "image/png")},
        headers={"X-Client-Id": "client-0"},
        timeout=60,
    )
    assert bad.status_code in (415, 422)
    status = httpx.get(server.url + "/v1/ab").json()
    by = {v["name"]: v for v in status["versions"]}
    expected = {name: sum(split.assign(c).name == name for c, _ in jobs) for name in models}
    expected[split.assign("client-0").name] += 1  # the broken upload
    assert {n: by[n]["requests"] for n in models} == expected
    assert sum(v["errors"] for v in by.values()) == 0 and by[split.assign("client-0").name]["rejected"] == 1
    assert status["excluded"] == 1
    assert all(by[n]["p50_ms"] is not None and by[n]["p95_ms"] >= by[n]["p50_ms"] for n in models)


def test_jobs_are_routed_and_counted_per_version(server: ServerProcess) -> None:
    split = ABSplit(CONTROL, [Variant("candidate", CANDIDATE, 0.3)])
    cid = next(f"job-client-{i}" for i in range(100) if split.assign(f"job-client-{i}").name == "candidate")
    before = {v["name"]: v for v in httpx.get(server.url + "/v1/ab").json()["versions"]}["candidate"]
    with httpx.Client(base_url=server.url, timeout=60, headers={"X-Client-Id": cid}) as c:
        r = c.post("/v1/jobs", files={"file": ("x.png", _png(7), "image/png")})
        assert r.status_code == 202 and r.headers["x-superres-version"] == "candidate"
        assert r.json()["model"] == CANDIDATE
        job = r.json()["id"]
        deadline = time.monotonic() + 60
        while c.get(f"/v1/jobs/{job}").json()["status"] != "done":
            assert time.monotonic() < deadline, "job not done within 60 s"
            time.sleep(0.05)  # polling a job, not a timing assertion
        bad = c.post("/v1/jobs", files={"file": ("x.png", b"not an image", "image/png")})
        assert bad.status_code in (415, 422)
        after = {v["name"]: v for v in c.get("/v1/ab").json()["versions"]}["candidate"]
    assert after["jobs"] - before["jobs"] == 2
    assert after["job_rejected"] - before["job_rejected"] == 1 and after["job_errors"] == 0
    assert after["job_p50_ms"] is not None and after["requests"] == before["requests"]


def test_a_browser_without_id_gets_a_cookie_and_keeps_its_version(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        first = c.post("/v1/upscale", files={"file": ("x.png", _png(1), "image/png")})
        assert first.status_code == 200 and "superres_client=" in first.headers["set-cookie"]
        versions = {first.headers["x-superres-version"]}
        for seed in range(2, 5):
            r = c.post("/v1/upscale", files={"file": ("x.png", _png(seed), "image/png")})
            assert "set-cookie" not in r.headers
            versions.add(r.headers["x-superres-version"])
        assert len(versions) == 1
        token = r.headers["x-superres-rating-token"]  # the last upscale's: rates the version that served it
        rated = c.post("/v1/ab/rating", json={"rating": 5, "token": token}).json()
        assert rated["version"] == versions.pop()
        assert c.post("/v1/ab/rating", json={"rating": 9, "token": token}).status_code == 422


def test_ratings_need_the_token_of_a_response_that_served_that_version(server: ServerProcess) -> None:
    """Issue 24 item 3: 500 x 5 for one version and 500 x 1 for the other, without any upscale, set the
    means to 5.0 and 1.0. Now a rating needs the single-use token of a response that served its version."""
    split = ABSplit(CONTROL, [Variant("candidate", CANDIDATE, 0.3)])
    cid = next(f"rating-{i}" for i in range(100) if split.assign(f"rating-{i}").name == "candidate")

    def versions(c: httpx.Client) -> dict[str, dict[str, object]]:
        return {v["name"]: v for v in c.get("/v1/ab").json()["versions"]}

    with httpx.Client(base_url=server.url, timeout=60, headers={"X-Client-Id": cid}) as c:
        before = versions(c)
        for k in range(500):
            no_token = c.post("/v1/ab/rating", json={"rating": 5, "version": "candidate"})
            assert no_token.status_code == 422, no_token.text
            forged = c.post("/v1/ab/rating", json={"rating": 1, "version": "control", "token": f"forged{k}"})
            assert forged.status_code == 403 and forged.json()["error"] == "bad_rating_token", forged.text
        assert versions(c) == before  # nothing counted
        img = {"file": ("x.png", _png(11), "image/png")}
        named = c.post("/v1/upscale", files=img, data={"model": CANDIDATE})
        assert named.status_code == 200 and "x-superres-rating-token" not in named.headers  # not in the test
        served = c.post("/v1/upscale", files={"file": ("x.png", _png(12), "image/png")})
        assert served.headers["x-superres-version"] == "candidate"
        token = served.headers["x-superres-rating-token"]
        other = c.post("/v1/ab/rating", json={"rating": 1, "version": "control", "token": token})
        assert other.status_code == 403  # a token rates only the version that served it
        ok = c.post("/v1/ab/rating", json={"rating": 4, "token": token})
        assert ok.status_code == 200 and ok.json()["version"] == "candidate"
        assert c.post("/v1/ab/rating", json={"rating": 5, "token": token}).status_code == 403  # single use
        after = versions(c)
    assert after["control"]["ratings"] == before["control"]["ratings"]
    assert after["candidate"]["ratings"] == before["candidate"]["ratings"] + 1  # type: ignore[operator]


def test_rating_tokens_and_counts_stay_bounded() -> None:
    from superres.serve.ab import ABMetrics
    from superres.serve.errors import ApiError

    metrics = ABMetrics(["a", "b"], max_tokens=5)
    tokens = [metrics.rating_token("a") for _ in range(10)]
    for t in tokens[:5]:  # the oldest unused tokens were dropped, not kept without bound
        with pytest.raises(ApiError, match="unused X-Superres-Rating-Token"):
            metrics.rate(t, 5)
    for k, t in enumerate(tokens[5:], 1):
        assert metrics.rate(t, k) == "a"
    snap = metrics.snapshot()["a"]
    assert snap["ratings"] == 5 and snap["rating_mean"] == 3.0
    with pytest.raises(ApiError):
        metrics.rate(tokens[-1], 5)  # used up


def test_bad_ab_fails_at_start_with_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "superres.serve", "--models", CONTROL, "--ab", "candidate:0.2", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "expected NAME=MODEL:SHARE" in r.stderr and "Traceback" not in r.stderr, r.stderr
