"""Server-sent events for a job (GET /jobs/{id}/events): history replayed in pages, then live updates.

What keeps many streams from starving the rest of the server (bench/sse_load.py measures it):

- **Database reads on their own limiter.** Every read of a stream runs in a worker thread under
  ``EventStreams.limiter`` (``events_db_threads`` tokens), not under the default thread limiter that
  the sync routes use: however many streams are open, they hold at most that many threads (and pooled
  connections), and /healthz, /readyz and the other requests keep theirs.
- **Encoding off the event loop and cheap.** The thread reads a page of points as JSON text
  (``crud.metrics_json_rows``: the stored values spliced in, no ORM objects, no per-point models) and
  formats the whole page as SSE bytes; the event loop only writes them, one write per page.
- **Back-pressure, a bounded buffer per stream.** The stream is a generator pulled by the response:
  the next page is read only after the previous one has been handed to the server, and uvicorn's
  ``send`` waits while the socket's write buffer is over its high-water mark (64 KiB). A stream thus
  holds at most one page (``events_page_points`` points, about 100 KiB) plus that buffer, whatever
  the client's pace; a client that stops reading stops its stream's reads.
- **Each page read once.** Streams replaying the same job mostly ask for the same pages (same
  cursors): a full page is kept in a small LRU (``events_page_cache_mb``, emptied when the last stream
  closes) and a read under way is shared, so 200 streams on one history cost little more than one.
- **Bounded polling.** During a replay a full page is followed at once by the next one (status only
  once the replay has caught up); at the live end a stream with nothing new backs off, doubling from
  ``events_poll_interval_s`` to ``events_idle_poll_max_s``.
- **A cap.** At most ``events_max_streams`` streams per process; one more gets 503 with Retry-After.

Events: ``status`` (the job as a list item, when it changes), ``metric`` (one point, ``id:`` its id, so
``Last-Event-ID`` resumes after it), ``end`` (the final status) — a job seen final has flushed all its
points, so ``end`` comes after the last one.

The points are those stored, so a long run's step points come bucketed (app/storage/buckets.py: mean with
``<value>_min`` / ``_max``, ``n`` steps from ``first_step``), each as its bucket completes; the buckets lie on
a grid fixed when the run starts, so a point once sent never changes and the id cursor stays exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import time
from collections import OrderedDict
from dataclasses import dataclass

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, status
from fastapi.responses import StreamingResponse
from sqlmodel import Session

from app import crud
from app.models import FINAL_STATES, JobListItem


@dataclass
class Page:
    exists: bool = True
    status: str | None = None  # the job's state, when this read looked at it
    status_json: str | None = None
    body: bytes = b""  # the page's metric events, ready to send
    count: int = 0
    last_id: int = 0


def sse(event: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


def read_page(engine, job_id: int, after: int, limit: int, with_status: bool) -> Page:
    """One stream read (in a worker thread): the job's status if asked, then up to ``limit`` points after ``after``.

    Status first, then metrics: a job seen final has flushed all its points before finishing.
    """
    with Session(engine, expire_on_commit=False) as session:
        page = Page(last_id=after)
        if with_status:
            job = crud.get_job(session=session, job_id=job_id)
            if job is None:
                return Page(exists=False, last_id=after)
            page.status = job.status
            page.status_json = JobListItem.from_job(job, with_result=False).model_dump_json()
        rows = crud.metrics_json_rows(session=session, job_id=job_id, after=after, limit=limit)
    if rows:
        page.count, page.last_id = len(rows), rows[-1][0]
        page.body = "".join([f"id: {i}\nevent: metric\ndata: {js}\n\n" for i, js in rows]).encode()
    return page


class EventStreams:
    """The streams of one app: their count (the cap), their database limiter, and counters for tests and benchmarks."""

    def __init__(self, settings):
        self.settings = settings
        self.limiter = anyio.CapacityLimiter(settings.events_db_threads)
        self.active = 0
        self.opened = 0
        self.refused = 0
        self.pages_read = 0  # from the database
        self.cache_hits = 0
        # Full pages of history by (job id, after): streams replaying one job read each page once.
        self._cache: OrderedDict[tuple[int, int], Page] = OrderedDict()
        self._cache_bytes = 0
        self._inflight: dict[tuple[int, int], asyncio.Future] = {}

    def acquire(self) -> None:
        """Take a stream slot or raise 503; on the event loop, with no await between the check and the count."""
        if self.active >= self.settings.events_max_streams:
            self.refused += 1
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"too many event streams open ({self.active}, the limit is {self.settings.events_max_streams}); retry later",
                headers={"Retry-After": str(self.settings.events_retry_after_s)},
            )
        self.active += 1
        self.opened += 1

    def release(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._cache.clear()
            self._cache_bytes = 0
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to hand back to
                asyncio.get_running_loop().run_in_executor(None, trim_memory)

    async def read(self, engine, job_id: int, after: int, with_status: bool) -> Page:
        """The page after ``after``. A replay's page (no status) comes from the cache or from a read
        already under way for another stream when there is one (a full page never changes: a job's
        points are appended by one writer, in id order)."""
        key, limit = (job_id, after), self.settings.events_page_points
        while not with_status:
            if (hit := self._cache.get(key)) is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return hit
            pending = self._inflight.get(key)
            if pending is None:
                break
            await asyncio.wait([pending])  # raises only if this stream is cancelled
            if not pending.cancelled():
                self.cache_hits += 1
                return pending.result()
        leader = None
        if not with_status:
            leader = self._inflight[key] = asyncio.get_running_loop().create_future()
        try:
            page = await anyio.to_thread.run_sync(read_page, engine, job_id, after, limit, with_status, limiter=self.limiter)
        except BaseException:
            if leader is not None:
                leader.cancel()  # the waiters read it themselves
            raise
        finally:
            if leader is not None:
                self._inflight.pop(key, None)
        self.pages_read += 1
        if leader is not None:
            leader.set_result(page)
        if page.count == limit and self.settings.events_page_cache_mb > 0:
            self._remember(key, page if not with_status else Page(body=page.body, count=page.count, last_id=page.last_id))
        return page

    def _remember(self, key: tuple[int, int], page: Page) -> None:
        if key in self._cache:
            return
        self._cache[key] = page
        self._cache_bytes += len(page.body)
        while self._cache_bytes > self.settings.events_page_cache_mb * 2**20 and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= len(old.body)


def streams_of(app: FastAPI) -> EventStreams:
    streams = getattr(app.state, "event_streams", None)
    if streams is None:  # made on first use, on the event loop (the limiter belongs to it)
        streams = app.state.event_streams = EventStreams(app.state.settings)
    return streams


_libc = None


def trim_memory() -> None:
    """Hand freed heap back to the OS (glibc's malloc_trim) once the last stream has closed.

    Streams allocate and free page-sized buffers by the thousand; glibc keeps the freed memory in its
    arenas (one per thread), so without this the process's RSS stays at its peak after the clients leave.
    """
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        _libc = False


class EventStreamResponse(StreamingResponse):
    """A stream that gives its slot back however it ends (finished, client gone, never started)."""

    def __init__(self, content, release):
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._release = release

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


async def job_event_stream(app: FastAPI, job_id: int, cursor: int) -> EventStreamResponse:
    """The response for GET /jobs/{job_id}/events from ``cursor`` (a metric id): 404 for no such job, 503 over the cap."""
    streams = streams_of(app)
    engine, settings = app.state.read_engine, app.state.settings  # reads only
    streams.acquire()
    try:
        first = await streams.read(engine, job_id, cursor, with_status=True)
        if not first.exists:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} not found")
    except BaseException:
        streams.release()
        raise
    page_points = settings.events_page_points

    async def stream():
        nonlocal cursor
        page: Page | None = first
        full = False
        last_status = None
        last_sent = time.monotonic()
        idle = settings.events_poll_interval_s
        while True:
            if page is None:
                # After a full page, the next page at once; the status once the replay has caught up.
                page = await streams.read(engine, job_id, cursor, with_status=not full)
            if not page.exists:
                yield sse("end", json.dumps({"id": job_id, "status": "deleted"})).encode()
                return
            full = page.count == page_points
            final = page.status in FINAL_STATES and not full
            out = []
            # A change of state comes before the points that follow it; the final state after the last points.
            if page.status_json is not None and page.status_json != last_status and not final:
                last_status = page.status_json
                out.append(sse("status", page.status_json).encode())
            out.append(page.body)
            cursor = page.last_id
            if final:
                if page.status_json != last_status:
                    out.append(sse("status", page.status_json).encode())
                out.append(sse("end", json.dumps({"id": job_id, "status": page.status})).encode())
                yield b"".join(out)
                return
            news = page.count > 0 or len(out) > 1
            looked = page.status is not None
            page = None
            if news:
                yield b"".join(out)  # one write per page; the generator resumes once it is taken
                last_sent = time.monotonic()
                idle = settings.events_poll_interval_s
            if full or not looked:
                # Let the event loop serve others between pages: a page from the cache and a socket with
                # room would otherwise go on without a single suspension, and /healthz waits meanwhile.
                await asyncio.sleep(0)
                continue
            if time.monotonic() - last_sent >= settings.events_heartbeat_s:
                last_sent = time.monotonic()
                yield b": heartbeat\n\n"
            await asyncio.sleep(idle)
            if not news:
                idle = min(idle * 2, max(settings.events_idle_poll_max_s, settings.events_poll_interval_s))

    return EventStreamResponse(stream(), streams.release)
