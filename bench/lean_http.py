"""A load generator's HTTP/1.1 client that costs its machine little: one keep-alive connection per simulated
client, requests written as bytes, responses read by their Content-Length without parsing the body.

Why not httpx: the benchmarks' clients share the server's 2 cores. At a million jobs 50 clients on httpx used
0.47 of a core at 182 requests a second, and this client 0.13 at 192 (docs/figures.md). httpx also reads a
20 MB body (the whole leaderboard there) through its parser in 64 KB steps, during which no other client's
answer on the same event loop is timed: what the clients measured was then largely themselves. This client
waits for the whole body with one ``readexactly``.
"""

from __future__ import annotations

import asyncio
import zlib
from urllib.parse import urlencode


class HTTPError(Exception):
    """The connection failed or the answer was not HTTP/1.1 with a Content-Length."""


class Response:
    """An answer as it came: ``content`` is the body as sent (gzipped when the server gzipped it)."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def decoded(self) -> bytes:
        """The body decompressed. Not done while timing: every simulated client shares one process here, where
        each real client would decompress on its own machine; inflating the 20 MB board takes this process
        about 40 ms, during which no other client's answer would be timed."""
        return zlib.decompress(self.content, wbits=31) if self.headers.get("content-encoding") == "gzip" else self.content


class Connection:
    """One keep-alive connection to ``host:port``; reopened after a failure. Not shared between tasks."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, params: dict | None = None) -> Response:
        target = path + ("?" + urlencode(params) if params else "")
        request = f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\r\n".encode()
        try:
            return await asyncio.wait_for(self._exchange(request), self.timeout_s)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, HTTPError) as exc:
            await self.close()
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, request: bytes) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        assert self._reader is not None
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise HTTPError(f"HTTP {status} without a Content-Length ({headers.get('transfer-encoding', 'no length')})")
        content = await self._reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, headers, content)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
