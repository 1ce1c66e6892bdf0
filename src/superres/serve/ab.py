"""Model versions and traffic splitting (``superres serve --ab NAME=MODEL:SHARE``).

A client is identified by its ``X-Client-Id`` header, else a ``superres_client`` cookie (set on its
first request when it has neither, so a browser stays on one version). The id is hashed (SHA-256 with
a fixed salt) to a number in [0, 1): candidates take consecutive slices of that interval by their
share, the rest goes to ``control`` (the server's default model). The hash makes the split sticky per
client, identical across restarts and replicas, and reproducible in tests; over many clients the
observed share is the configured one up to sampling noise (binomial: about 1.3 points for a 20% share
over 1,000 clients).

Only requests that leave the model choice to the server are in the experiment; one that names a model
is served as asked and counted as ``excluded``. Per version, for ``POST /v1/upscale``: requests,
errors (5xx, 429 and timeouts: the server's fault), rejected requests (other 4xx: the client's),
latency p50/p95 from request to last byte, and optional ratings (``POST /v1/ab/rating``, 1-5). Jobs
(``POST /v1/jobs``, what the web page uses) are routed by the same split and counted apart: jobs,
job errors, cancelled, and p50/p95 from submission to the finished result.

A rating is tied to a request that served that client that version: every answer the split served
(200 from ``/v1/upscale``, 202 from ``/v1/jobs``) carries ``X-Superres-Rating-Token``, a random
single-use token for its version, and ``POST /v1/ab/rating`` counts a rating only with a token that
was issued, is unused and not older than :data:`RATING_TTL`; the rating goes to the token's version.
So a rating costs a served upscale, and nobody rates a version they were not served. At most
:data:`MAX_OPEN_TOKENS` unused tokens are kept (the oldest are dropped first), and ratings are kept as
counts per star, so memory stays bounded however many arrive.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..errors import SuperresError
from .errors import ApiError, ErrorBody

__all__ = [
    "ABMetrics", "ABSplit", "RATING_HEADER", "Variant", "choose_model", "parse_ab", "register", "track_job"
]

CLIENT_HEADER = "x-client-id"
COOKIE = "superres_client"
STATE_KEY = "superres_ab"
ROUTED = ("/v1/upscale", "/v1/jobs")
TIMED = "/v1/upscale"
RATING_HEADER = "x-superres-rating-token"
RATING_TTL = 24 * 3600.0  # seconds a rating token stays valid
MAX_OPEN_TOKENS = 100_000  # unused rating tokens kept; the oldest are dropped first
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]{1,40})=(?P<model>.+):(?P<share>[0-9.]+%?)$")


@dataclass(frozen=True)
class Variant:
    name: str
    model: str
    share: float


def parse_ab(items: Sequence[str]) -> list[Variant]:
    """``["candidate=espcn-m-x4:0.2"]`` -> candidates; the share is a fraction or a percentage."""
    out: list[Variant] = []
    for item in items:
        m = _SPEC.match(item.strip())
        if not m:
            raise SuperresError(f"--ab {item!r}: expected NAME=MODEL:SHARE, e.g. candidate=espcn-m-x4:0.2")
        text = m["share"]
        try:
            share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise SuperresError(f"--ab {item!r}: share {text!r} is not a number") from None
        if not 0 < share < 1:
            raise SuperresError(f"--ab {item!r}: share must be between 0 and 1 (or 0% and 100%), exclusive")
        if m["name"] == "control" or m["name"] in {v.name for v in out}:
            raise SuperresError(f"--ab {item!r}: version name {m['name']!r} is taken")
        out.append(Variant(m["name"], m["model"], share))
    if sum(v.share for v in out) >= 1:
        raise SuperresError("--ab shares add up to 100% or more: nothing would be left for control")
    return out


def ab_models(items: Sequence[str]) -> list[str]:
    """The model names inside ``--ab`` items (so the server loads them); tolerant of bad items."""
    return [m["model"] for m in (_SPEC.match(i.strip()) for i in items) if m]


class Rating(BaseModel):
    rating: int = Field(ge=1, le=5, description="1 (bad) to 5 (excellent)")
    token: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="the X-Superres-Rating-Token of the response that served the result (single use)",
    )
    version: Optional[str] = Field(None, description="if given, the version that token was issued for")


class ABSplit:
    """The deterministic, sticky assignment of client ids to versions."""

    def __init__(
        self, control_model: str, candidates: Sequence[Variant], salt: str = "superres-ab-v1"
    ) -> None:
        self.control = Variant("control", control_model, 1.0 - sum(v.share for v in candidates))
        self.candidates = list(candidates)
        self.salt = salt.encode()

    @property
    def variants(self) -> list[Variant]:
        return [self.control, *self.candidates]

    def position(self, client_id: str) -> float:
        digest = hashlib.sha256(self.salt + b"\0" + client_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def assign(self, client_id: str) -> Variant:
        u, edge = self.position(client_id), 0.0
        for v in self.candidates:
            edge += v.share
            if u < edge:
                return v
        return self.control


def _quantile(sorted_values: list[float], q: float) -> Optional[float]:
    if not sorted_values:
        return None
    k = max(0, math.ceil(q * len(sorted_values)) - 1)  # nearest rank
    return sorted_values[k]


class ABMetrics:
    """Per-version counters and latencies; thread-safe (recorded from the event loop, read anywhere)."""

    def __init__(
        self,
        names: Sequence[str],
        keep: int = 100_000,
        max_tokens: int = MAX_OPEN_TOKENS,
        ttl: float = RATING_TTL,
    ) -> None:
        self._lock = threading.Lock()
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()  # token -> (version, issued)
        self._max_tokens, self._ttl = max_tokens, ttl
        self._data = {
            n: {
                "requests": 0,
                "errors": 0,
                "rejected": 0,
                "lat": deque(maxlen=keep),
                "stars": [0, 0, 0, 0, 0],  # how many ratings of 1..5
                "jobs": 0,
                "job_errors": 0,
                "job_rejected": 0,
                "job_cancelled": 0,
                "job_lat": deque(maxlen=keep),
            }  # fmt: skip
            for n in names
        }
        self.excluded = 0
        self._pending: list[tuple[str, Any]] = []  # (version, Job) until the job finishes

    def record(self, name: str, seconds: float, status: int) -> None:
        with self._lock:
            d = self._data[name]
            d["requests"] += 1
            if status >= 500 or status == 429:
                d["errors"] += 1
            elif status >= 400:
                d["rejected"] += 1
            else:
                d["lat"].append(seconds)

    def track_job(self, name: str, job: Any) -> None:
        """Count this job for ``name`` once it finishes (read from the job record when asked)."""
        with self._lock:
            self._pending.append((name, job))

    def _harvest(self) -> None:
        """Move finished jobs into the counters (caller holds the lock)."""
        waiting = []
        for name, job in self._pending:
            if job.finished is None:
                waiting.append((name, job))
                continue
            d = self._data[name]
            d["jobs"] += 1
            if job.control.stage == "done":  # stays "done" when the result is later deleted
                d["job_lat"].append(job.finished - job.created)
            elif job.status == "failed":
                code = job.error_status or 500
                d["job_errors" if code >= 500 or code == 429 else "job_rejected"] += 1
            else:
                d["job_cancelled"] += 1
        self._pending = waiting

    def job_refused(self, name: str, job: Any, status: int) -> None:
        """A job submission answered with an error: counted now, and its job (if any) is not awaited."""
        with self._lock:
            self._pending = [(n, j) for n, j in self._pending if j is not job]
            d = self._data[name]
            d["jobs"] += 1
            d["job_errors" if status >= 500 or status == 429 else "job_rejected"] += 1

    def exclude(self) -> None:
        with self._lock:
            self.excluded += 1

    def rating_token(self, name: str) -> str:
        """A new single-use token to rate ``name`` (issued with a response that served ``name``)."""
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._tokens[token] = (name, time.monotonic())
            while len(self._tokens) > self._max_tokens:
                self._tokens.popitem(last=False)
        return token

    def rate(self, token: str, rating: int, version: Optional[str] = None) -> str:
        """Count ``rating`` for the version ``token`` was issued for, using the token up; returns the
        version. :class:`ApiError` (403) for an unknown, used or expired token or another version."""
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None or time.monotonic() - entry[1] > self._ttl:
                self._tokens.pop(token, None)
                raise ApiError(
                    403,
                    "bad_rating_token",
                    "a rating needs the unused X-Superres-Rating-Token of a response that served you a "
                    "version (tokens are single use and expire after a day)",
                )
            name = entry[0]
            if version is not None and version != name:
                raise ApiError(403, "bad_rating_token", f"this token rates version {name!r}, not {version!r}")
            del self._tokens[token]
            self._data[name]["stars"][int(rating) - 1] += 1
        return name

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            self._harvest()
            out: dict[str, dict[str, Any]] = {}
            for n, d in self._data.items():
                lat, job_lat = sorted(d["lat"]), sorted(d["job_lat"])
                p50, p95 = _quantile(lat, 0.5), _quantile(lat, 0.95)
                stars = d["stars"]
                n_rated = sum(stars)
                out[n] = {
                    "requests": d["requests"],
                    "errors": d["errors"],
                    "rejected": d["rejected"],
                    "error_rate": d["errors"] / d["requests"] if d["requests"] else 0.0,
                    "p50_ms": None if p50 is None else round(p50 * 1000, 2),
                    "p95_ms": None if p95 is None else round(p95 * 1000, 2),
                    "mean_ms": round(sum(lat) / len(lat) * 1000, 2) if lat else None,
                    "ratings": n_rated,
                    "rating_mean": (
                        round(sum(k * c for k, c in enumerate(stars, 1)) / n_rated, 3) if n_rated else None
                    ),
                    "jobs": d["jobs"],
                    "job_errors": d["job_errors"],
                    "job_rejected": d["job_rejected"],
                    "job_cancelled": d["job_cancelled"],
                    "job_p50_ms": _ms(_quantile(job_lat, 0.5)),
                    "job_p95_ms": _ms(_quantile(job_lat, 0.95)),
                }
            return out


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000, 2)


def track_job(request: Any, job: Any) -> None:
    """Count a submitted job for its client's version (nothing without a split, or with a named model)."""
    st = request.scope.get("state", {}).get(STATE_KEY)
    if st is not None and st["used"] and not st["excluded"]:
        st["job"] = job
        request.app.state.ab[1].track_job(st["variant"].name, job)


def choose_model(request: Any, requested: Optional[str]) -> Optional[str]:
    """The model for this request: the one it names, else its A/B version's (no split: unchanged)."""
    st = request.scope.get("state", {}).get(STATE_KEY)
    if st is None:
        return requested
    if requested:
        st["excluded"] = True
        return requested
    st["used"] = True
    return str(st["variant"].model)


class _SplitMiddleware:
    """Assigns each routed request its version, sets the cookie, times it, counts its outcome."""

    def __init__(self, app: Any, split: ABSplit, metrics: ABMetrics) -> None:
        self.app, self.split, self.metrics = app, split, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path in ROUTED or path.startswith("/v1/ab")):
            await self.app(scope, receive, send)
            return
        client, new = _client_id(scope)
        variant = self.split.assign(client)
        st: dict[str, Any] = {"variant": variant, "client": client, "excluded": False, "used": False}
        scope.setdefault("state", {})[STATE_KEY] = st
        timed = path == TIMED and scope.get("method") == "POST"
        submits = path == "/v1/jobs" and scope.get("method") == "POST"
        started = time.perf_counter()
        status = 500

        async def send_wrapped(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                if st["used"]:
                    headers.append((b"x-superres-version", variant.name.encode()))
                    if not st["excluded"] and status in (200, 202):
                        token = self.metrics.rating_token(variant.name)
                        headers.append((RATING_HEADER.encode(), token.encode()))
                if new:
                    headers.append(
                        (b"set-cookie", f"{COOKIE}={client}; Path=/; Max-Age=31536000; SameSite=Lax".encode())
                    )
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        finally:
            if st["excluded"]:
                self.metrics.exclude()
            elif timed:
                self.metrics.record(variant.name, time.perf_counter() - started, status)
            elif submits and status != 202:
                self.metrics.job_refused(variant.name, st.get("job"), status)


def _client_id(scope: Any) -> tuple[str, bool]:
    """The caller's id from the header or cookie; a new random one (to be set as cookie) otherwise."""
    cookie = ""
    for k, v in scope.get("headers", []):
        if k == b"x-client-id":
            text = v.decode("latin-1").strip()
            if _ID.match(text):
                return text, False
        elif k == b"cookie":
            cookie = v.decode("latin-1")
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and _ID.match(value):
            return value, False
    return "c-" + secrets.token_hex(12), True


def register(app: Any, items: Sequence[str], pool: Any) -> Optional[ABSplit]:
    """Install the split for ``--ab`` items on the app: the middleware, ``GET /v1/ab`` and
    ``POST /v1/ab/rating``. The candidates must be served models. Without items only ``GET /v1/ab``
    is added, answering ``{"enabled": false}`` (so the page can ask without provoking a 404)."""
    if not items:
        off = APIRouter(tags=["ab"])

        @off.get("/v1/ab")
        async def ab_off() -> dict[str, Any]:
            """No A/B test is configured (start the server with --ab NAME=MODEL:SHARE)."""
            return {"enabled": False, "you": None, "excluded": 0, "versions": []}

        app.include_router(off)
        return None
    candidates = parse_ab(items)
    for v in candidates:
        try:
            pool.resolve(v.model)
        except ApiError as e:
            raise SuperresError(f"--ab {v.name}: {e.detail}") from None
    split = ABSplit(pool.default, [Variant(v.name, pool.resolve(v.model), v.share) for v in candidates])
    metrics = ABMetrics([v.name for v in split.variants])
    app.state.ab = (split, metrics)
    app.add_middleware(_SplitMiddleware, split=split, metrics=metrics)
    router = APIRouter(tags=["ab"])

    @router.get("/v1/ab")
    async def ab_status(request: Request) -> dict[str, Any]:
        """The versions, their configured shares and measured metrics, and the caller's version."""
        snap = metrics.snapshot()
        st = request.scope.get("state", {}).get(STATE_KEY)
        return {
            "enabled": True,
            "you": st["variant"].name if st else None,
            "excluded": metrics.excluded,
            "versions": [
                {"name": v.name, "model": v.model, "share": v.share, **snap[v.name]} for v in split.variants
            ],
        }

    @router.post(
        "/v1/ab/rating",
        responses={
            400: {"model": ErrorBody, "description": "Body is not JSON"},
            403: {"model": ErrorBody, "description": "No valid, unused rating token for that version"},
            422: {"model": ErrorBody, "description": "Bad rating (1-5) or malformed token"},
        },
    )
    async def ab_rating(r: Rating) -> dict[str, Any]:
        """A rating (1-5) of a result, with the single-use ``X-Superres-Rating-Token`` of the response that
        served it; counted for the version that response came from."""
        name = metrics.rate(r.token, r.rating, r.version)
        return {"ok": True, "version": name}

    app.include_router(router)
    return split


def served_models(models: Sequence[str], items: Sequence[str]) -> list[str]:
    """``--models`` (none: the server's default set, zoo.choose.served_by_default) plus the ``--ab``
    candidates not already in it."""
    if not models:
        if not items:
            return []  # the pool picks the default set itself
        from ..zoo.choose import served_by_default

        models = served_by_default()
    extra = [m for m in ab_models(items) if m not in models]
    return [*models, *dict.fromkeys(extra)]
