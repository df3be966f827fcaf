"""A real HTTP server on 127.0.0.1 that serves product images and injects faults, counting requests.

Every path under `/img/` not given a route gets a JPEG generated from the path (its size and
colours are a function of the path, so a test can predict them). Routes script the answers to
a path: `Reply(404)`, a 500 then a 200, a reply slower than the client's timeout, a dropped
connection, any body with any content type. Used by the tests and by `benchmarks/bench_build.py`.
"""

from __future__ import annotations

import collections
import hashlib
import io
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageDraw


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "image/jpeg"
    delay: float = 0.0  # seconds before answering
    drop: bool = False  # close the connection without answering


def generated_size(path: str, sizes: tuple[int, int] = (48, 640)) -> tuple[int, int]:
    """The (width, height) of the JPEG generated for `path`: varied, deterministic."""
    digest = hashlib.sha256(path.encode()).digest()
    low, high = sizes
    span = high - low + 1
    return low + int.from_bytes(digest[0:2], "big") % span, low + int.from_bytes(
        digest[2:4], "big"
    ) % span


def product_jpeg(width: int, height: int, seed: int = 0, quality: int = 85) -> bytes:
    """A plain product-like photo: light background, a coloured shape, a few details."""
    digest = hashlib.sha256(f"{seed}".encode()).digest()
    image = Image.new("RGB", (width, height), (240 + digest[0] % 16,) * 3)
    draw = ImageDraw.Draw(image)
    colour = tuple(digest[1:4])
    draw.rounded_rectangle(
        [width * 0.2, height * 0.1, width * 0.8, height * 0.9],
        radius=min(width, height) // 8,
        fill=colour,
    )
    for i in range(6):
        x, y = width * (0.25 + 0.08 * i), height * (0.2 + 0.1 * (digest[4 + i] % 6))
        r = max(2, min(width, height) // 30)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(digest[10 + i : 13 + i]))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG header announcing `width` x `height` pixels, in ~60 bytes (no pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


class ImageServer:
    """`with ImageServer() as server:` ... `server.url("/img/a.jpg")`, `server.requests[path]`."""

    def __init__(self, sizes: tuple[int, int] = (48, 640)):
        self.sizes = sizes
        self.routes: dict[str, list[Reply]] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.hold_after: int | None = None  # requests beyond this many wait for `release`
        self.release = threading.Event()
        self._generated: dict[str, bytes] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real CDNs

            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path
                with server.lock:
                    n = server.requests[path]
                    server.requests[path] += 1
                    total = sum(server.requests.values())
                if server.hold_after is not None and total > server.hold_after:
                    server.release.wait()
                reply = server.reply(path, n)
                try:
                    if reply.delay:
                        time.sleep(reply.delay)
                    if reply.drop:
                        self.close_connection = True
                        return
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (timeout): fine

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def reply(self, path: str, n: int) -> Reply:
        """The answer to the `n`-th request (0-based) for `path`: scripted, else generated."""
        if path in self.routes:
            replies = self.routes[path]
            return replies[min(n, len(replies) - 1)]
        if path.startswith("/img/"):
            with self.lock:
                body = self._generated.get(path)
            if body is None:
                body = product_jpeg(*generated_size(path, self.sizes), seed=path)
                with self.lock:
                    self._generated[path] = body
            return Reply(body=body)
        return Reply(404, b"not found", "text/plain")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
        self.hold_after = None
        self.release.clear()

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
