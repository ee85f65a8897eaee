"""A client of the dynds REST API that needs only httpx: submit a spec, follow the job to its end.

`dynds submit` is built on it, and a CI script may use it directly (docs/api.md, "Clients")::

    with Client("http://host:8000", token) as api:
        job = api.submit(spec)
        job = api.follow(job, on_state=print)   # the job as it ended, with its result
        board = api.leaderboard(min_seeds=1)
        gate = api.follow_gate(spec, require="worth-it", max_seeds=5)   # a decision over seeds: gate["decision"]

Answers are the API's JSON as dicts (docs/api.md documents each; /openapi.json has their schemas, from
which typed clients in any language can be generated: tests/app/test_generated_clients.py does).

Following reads the job's server-sent events (``GET /jobs/{id}/events``) asking for no metric points,
so only its changes of state and its end arrive: no polling, and no replay of a long history.

Transient trouble is retried, with backoff, for up to ``Retry.retry_for_s`` seconds in a row: a
refused or reset connection, a timeout, a stream cut before the job's end, and 502/503/504 (a
restarting server or a proxy; 503's Retry-After is honoured). A server restart thus does not end a CI
job. Every submission carries an ``Idempotency-Key``, so a POST retried after its answer was lost
returns the job it made instead of making a second one. Any other error status is an :class:`ApiError`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import httpx

FINAL_STATES = ("succeeded", "failed", "cancelled")
RETRY_STATUSES = frozenset({502, 503, 504})
# Following needs no metric points: asking for those after the largest id gives status events only.
NO_METRICS = 2**63 - 1
# The server sends a heartbeat every 15 s (events_heartbeat_s): a stream silent for longer is dead.
STREAM_READ_TIMEOUT_S = 60.0


def api_base(server: str) -> str:
    """The API's root for a server's address: ``api_base("http://host:8000")`` is ``http://host:8000/api/v1``."""
    server = server.rstrip("/")
    return server if server.endswith("/api/v1") else server + "/api/v1"


def dashboard_url(server: str, job_id: int) -> str:
    """The job's page on the dashboard the server serves."""
    root = api_base(server).removesuffix("/api/v1")
    return f"{root}/#/jobs/{job_id}"


# POST /gate's decisions; all but "undecided" are final (asking again answers the same).
GATE_DECISIONS = ("pass", "fail", "undecided", "inconclusive", "error")
GATE_FINAL = ("pass", "fail", "inconclusive", "error")


class GateSeed(TypedDict):
    """One planned seed of a gate (docs/api.md, "Gate")."""

    seed: int
    status: Literal["done", "running", "queued", "failed", "elsewhere", "missing", "not_needed"]
    job_ids: list[int]
    value: float | None
    hardware_key: str | None


class GateLook(TypedDict):
    n_seeds: int
    mean: float
    ci: list[float]
    outcome: Literal["pass", "fail"] | None


class Gate(TypedDict):
    """POST /gate's answer: where the decision over seeds stands (docs/api.md, "Gate"; GatePublic in the OpenAPI)."""

    decision: Literal["pass", "fail", "undecided", "inconclusive", "error"]
    reason: str
    require: Literal["worth-it", "no-worse"]
    metric: Literal["equal_time_gap", "acc_delta"]
    threshold: float
    max_acc_drop: float | None
    min_seeds: int
    max_seeds: int
    alpha: float
    level: float
    looks_planned: int
    looks: list[GateLook]
    n_seeds: int
    mean: float | None
    ci: list[float] | None
    ci95: list[float] | None
    time_saving_mean: float | None
    recipe_hash: str
    setting_key: str
    hardware_key: str | None
    seeds: list[GateSeed]
    submitted_job_ids: list[int]
    noisy_job_ids: list[int]
    notes: list[str]
    warnings: list[str]


class ApiError(Exception):
    """The server answered with an error that retrying will not change (4xx, a 500)."""

    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        self.url = str(response.request.url)
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = response.text
        super().__init__(f"{self.status_code} from {self.url}: {self.detail}")

    @property
    def detail(self) -> Any:
        """The problem's ``detail`` (RFC 9457), or the whole body when it is not a problem."""
        return self.body.get("detail", self.body) if isinstance(self.body, dict) else self.body


class Unreachable(Exception):
    """The server stayed unreachable (or kept answering 502/503/504) for the whole retry window."""


@dataclass
class Retry:
    """How long transient trouble is retried: ``Client(server, retry=Retry(retry_for_s=600))`` for a CI job
    that should outlast a server's restart."""

    retry_for_s: float = 120.0  # give up after this long failing without a success in between
    first_wait_s: float = 0.5
    max_wait_s: float = 8.0


class _Backoff:
    """Waits between tries, doubling; raises Unreachable once failures have lasted ``retry_for_s``."""

    def __init__(self, retry: Retry, note: Callable[[str], None] | None, sleep: Callable[[float], None]):
        self.retry, self.note, self.sleep = retry, note, sleep
        self.reset()

    def reset(self) -> None:
        self.since: float | None = None
        self.wait = self.retry.first_wait_s

    def failed(self, what: str, problem: str, *, retry_after: float | None = None, deadline: float | None = None) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        if now - self.since >= self.retry.retry_for_s:
            raise Unreachable(f"{what}: {problem} (still failing after {now - self.since:.0f} s of retries)")
        wait = min(max(self.wait, retry_after or 0.0), self.retry.max_wait_s)
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - now))
        if self.note:
            self.note(f"{what}: {problem}; retrying in {wait:.1f} s")
        self.sleep(wait)
        self.wait = min(self.wait * 2, self.retry.max_wait_s)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream, from its lines; comments (heartbeats) are skipped."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


class Client:
    """The REST API of one server. ``note`` hears every retry (``dynds submit`` prints them)."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        retry: Retry | None = None,
        timeout_s: float = 30.0,
        note: Callable[[str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base = api_base(server)
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(headers=headers, timeout=timeout_s, transport=transport)
        self._retry, self._note, self._sleep = retry or Retry(), note, sleep

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections (``with Client(...)`` does it at the end of the block)."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        backoff = _Backoff(self._retry, self._note, self._sleep)
        what = f"{method} {path}"
        while True:
            try:
                resp = self._http.request(method, f"{self.base}{path}", **kwargs)
            except httpx.TransportError as exc:
                backoff.failed(what, f"{type(exc).__name__}: {exc}")
                continue
            if resp.status_code in RETRY_STATUSES:
                backoff.failed(what, f"{resp.status_code} {resp.reason_phrase}", retry_after=_retry_after(resp))
                continue
            if resp.status_code >= 400:
                raise ApiError(resp)
            return resp

    def submit(self, spec: dict[str, Any], *, force: bool = False, idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /jobs; the job (201 new, 200 an identical job that exists, ``deduplicated`` true)."""
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return self._request("POST", "/jobs", json={"spec": spec, "force": force}, headers=headers).json()

    def job(self, job_id: int) -> dict[str, Any]:
        """GET /jobs/{id}: the job, with its ``summary`` (``verdict`` included) and ``result`` once it succeeded."""
        return self._request("GET", f"/jobs/{job_id}").json()

    def validate(self, spec: dict[str, Any]) -> dict[str, Any]:
        """POST /specs/validate: the spec's canonical form, hash and cost estimate; ApiError (422) names each bad key."""
        return self._request("POST", "/specs/validate", json={"spec": spec}).json()

    def leaderboard(self, **params: Any) -> dict[str, Any]:
        """GET /leaderboard: tracks with their ranked cells over seeds; ``params``: ``track``, ``max_acc_drop``,
        ``min_seeds``, ``include_noisy``."""
        return self._request("GET", "/leaderboard", params=params).json()

    def gate(
        self,
        spec: dict[str, Any],
        *,
        require: Literal["worth-it", "no-worse"],
        max_acc_drop: float | None = None,
        min_seeds: int = 3,
        max_seeds: int | None = None,
    ) -> Gate:
        """POST /gate: where the decision over seeds stands; submits the seeds it still needs. Idempotent: ask
        again (or ``follow_gate``) until ``decision`` is not "undecided"."""
        body: dict[str, Any] = {"spec": spec, "require": require, "min_seeds": min_seeds}
        if max_seeds is not None:  # the server's default: 5, or min_seeds if larger
            body["max_seeds"] = max_seeds
        if max_acc_drop is not None:
            body["max_acc_drop"] = max_acc_drop
        return self._request("POST", "/gate", json=body).json()

    def follow_gate(
        self,
        spec: dict[str, Any],
        *,
        require: Literal["worth-it", "no-worse"],
        max_acc_drop: float | None = None,
        min_seeds: int = 3,
        max_seeds: int | None = None,
        timeout_s: float | None = None,
        on_gate: Callable[[Gate], None] | None = None,
        on_state: Callable[[dict[str, Any]], None] | None = None,
    ) -> Gate:
        """Ask the gate until it decides (or ``timeout_s`` passes: then its last, undecided answer): between asks,
        follow the job of the first seed still pending to its end (``on_state`` hears that job's states)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            g = self.gate(spec, require=require, max_acc_drop=max_acc_drop, min_seeds=min_seeds, max_seeds=max_seeds)
            if on_gate:
                on_gate(g)
            if g["decision"] in GATE_FINAL or (deadline is not None and time.monotonic() >= deadline):
                return g
            pending = [s for s in g["seeds"] if s["status"] in ("queued", "running") and s["job_ids"]]
            if not pending:  # a seed's job was just made elsewhere: ask again shortly
                self._sleep(1.0)
                continue
            for state in self.states(pending[0]["job_ids"][-1], deadline=deadline):
                if on_state:
                    on_state(state)

    def states(self, job_id: int, *, deadline: float | None = None) -> Iterator[dict[str, Any]]:
        """The job (as a list item, progress included) each time it changes, until its end or ``deadline``
        (time.monotonic()); reconnects after transient trouble."""
        backoff = _Backoff(self._retry, self._note, self._sleep)
        what = f"GET /jobs/{job_id}/events"
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            read_s = STREAM_READ_TIMEOUT_S if remaining is None else min(STREAM_READ_TIMEOUT_S, remaining)
            try:
                with self._http.stream(
                    "GET",
                    f"{self.base}/jobs/{job_id}/events",
                    params={"after": NO_METRICS},
                    headers={"Accept": "text/event-stream"},
                    timeout=httpx.Timeout(self.timeout_s, read=read_s),
                ) as resp:
                    if resp.status_code in RETRY_STATUSES:
                        problem, retry_after = f"{resp.status_code} {resp.reason_phrase}", _retry_after(resp)
                    elif resp.status_code >= 400:
                        resp.read()
                        raise ApiError(resp)
                    else:
                        backoff.reset()
                        for event, data in sse_events(resp.iter_lines()):
                            if event == "status":
                                yield json.loads(data)
                            elif event == "end":
                                return
                        problem, retry_after = "the event stream closed before the job ended", None
            except httpx.TransportError as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                problem, retry_after = f"{type(exc).__name__}: {exc}", None
            backoff.failed(what, problem, retry_after=retry_after, deadline=deadline)

    def follow(
        self, job: dict[str, Any], *, timeout_s: float | None = None, on_state: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Follow ``job`` to its end, or for ``timeout_s``; the job as it then is, with its result."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if on_state:
            on_state(job)
        if job["status"] in FINAL_STATES:
            return job
        for state in self.states(job["id"], deadline=deadline):
            if on_state:
                on_state(state)
        return self.job(job["id"])
