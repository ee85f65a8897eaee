"""bench/lean_http.py, the load generator's client, against a real socket server: keep-alive, whole bodies of
any size, the server's headers, a refusal of what it cannot frame, and a new connection after a failure."""

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import lean_http  # noqa: E402


async def serve(answers: dict[str, bytes]):
    """A server answering each GET path with the bytes in ``answers`` (the status line and headers included)."""
    accepted = []

    async def handle(reader, writer):
        accepted.append(writer)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            path = head.split(b" ")[1].decode()
            writer.write(answers[path.split("?")[0]])
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], accepted


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nServer-Timing: app;dur=1.5\r\n{extra}\r\n".encode() + body


def test_bodies_of_any_size_come_whole_over_one_kept_connection():
    big = bytes(range(256)) * 12_000  # 3 MB, past the reader's 1 MB buffer limit

    async def main():
        server, port, accepted = await serve(
            {"/small": ok(b'{"a":1}'), "/big": ok(big), "/missing": b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"}
        )
        conn = lean_http.Connection("127.0.0.1", port)
        small = await conn.get("/small", {"limit": 50, "order": "-time_saving"})
        whole = await conn.get("/big")
        missing = await conn.get("/missing")
        await conn.close()
        server.close()
        return small, whole, missing, len(accepted)

    small, whole, missing, connections = asyncio.run(main())
    assert small.status_code == 200 and small.content == small.decoded() == b'{"a":1}' and small.headers["server-timing"] == "app;dur=1.5"
    assert whole.content == big
    assert missing.status_code == 404 and missing.content == b"{}"
    assert connections == 1


def test_a_gzipped_body_comes_as_sent_and_decodes_to_the_json():
    import gzip

    data = b'{"tracks":[' + b'{"x":1},' * 5000 + b"{}]}"
    packed = gzip.compress(data)

    async def main():
        server, port, _ = await serve({"/board": ok(packed, "Content-Encoding: gzip\r\n")})
        conn = lean_http.Connection("127.0.0.1", port)
        r = await conn.get("/board")
        await conn.close()
        server.close()
        return r

    r = asyncio.run(main())
    assert r.content == packed and r.decoded() == data and r.headers["content-encoding"] == "gzip"


def test_an_answer_without_a_length_is_an_error_and_the_next_request_reconnects():
    async def main():
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        server, port, accepted = await serve({"/chunked": chunked, "/small": ok(b"[]")})
        conn = lean_http.Connection("127.0.0.1", port)
        with pytest.raises(lean_http.HTTPError, match="without a Content-Length"):
            await conn.get("/chunked")
        after = await conn.get("/small")
        await conn.close()
        server.close()
        return after, len(accepted)

    after, connections = asyncio.run(main())
    assert after.content == b"[]" and connections == 2


def test_a_refused_connection_is_an_error_not_a_hang():
    async def main():
        conn = lean_http.Connection("127.0.0.1", 9, timeout_s=5)  # the discard port: nothing listens here
        await conn.get("/")

    with pytest.raises(lean_http.HTTPError):
        asyncio.run(main())
