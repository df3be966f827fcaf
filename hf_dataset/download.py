"""Fetch product images over HTTP into a resumable cache, unattended and safely.

Every image goes through the same steps: download (per-request timeout; retries with exponential
backoff on timeouts, connection errors and 5xx, none on other 4xx), verify (it must decode fully;
non-images and truncated files are rejected), refuse decompression bombs (a pixel limit read from
the header, before anything is decoded), make it upright 8-bit RGB (`build.to_rgb`: EXIF orientation,
16-bit scaled, transparency over white), cap the longest side and re-encode as JPEG q90
(`build.encode_image`).

The result is written atomically (temporary file + rename) into a cache keyed by a hash of the URL
and the size cap, so a killed run resumes without downloading again and never leaves a half-written
file. Failures that will not change on a retry (4xx, not an image, too large) are cached as small
`.fail` markers, so a rerun does not hit dead links again; transient ones (timeouts, 5xx, connection
errors) are not, so a rerun retries them.

`ImageRecords` turns the images, downloaded here or read from disk by the folder source, into dataset
records, counting each one dropped.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import random
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image, UnidentifiedImageError

from .build import DEFAULT_MAX_SIDE, encode_image

# Product photos are at most a few thousand pixels a side; 20,000 x 20,000 is an attack or a bug.
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 30 * 2**20
USER_AGENT = "fashion-rating-caption/0.1 (dataset builder; python-httpx)"
# "Try again later" statuses: retried like 5xx. Every other 4xx is final.
RETRY_STATUSES = {408, 429}


class DownloadFailed(Exception):
    """An image that cannot be used; `reason` is the build report's key (`http_404`, `timeout`, ...)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        # Whether a rerun could succeed: transient failures are not cached.
        self.transient = reason in ("timeout", "connection_error") or _is_retry_status(reason)


def _is_retry_status(reason: str) -> bool:
    if not reason.startswith("http_"):
        return False
    status = int(reason[5:])
    return status >= 500 or status in RETRY_STATUSES


@dataclass
class DownloadConfig:
    """How images are fetched and stored.

    Args:
        timeout: seconds to wait for the server to connect and for each read.
        retries: extra attempts after a timeout, a connection error or a 5xx/408/429 answer.
        backoff: base delay in seconds; attempt `n` waits `backoff * 2**n` (+ up to 50% jitter).
        max_side: longest side of the stored image in pixels.
        max_pixels: images with more pixels (read from the header) are refused as `too_large`.
        max_bytes: responses larger than this are refused as `too_large`.
        workers: concurrent downloads.
    """

    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    max_side: int = DEFAULT_MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    workers: int = 16


def process_image(data: bytes, max_side: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Verify `data` is a whole, reasonably sized image and re-encode it for the dataset.

    Raises `DownloadFailed("invalid_image" | "too_large")`.
    """
    try:
        with warnings.catch_warnings():
            # PIL warns (and errors past 2x its own limit) on big images; we apply our own limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size  # from the header: nothing is decoded yet
            if width * height > max_pixels:
                raise DownloadFailed("too_large", f"{width}x{height} pixels")
            # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; keep at least `max_side`.
            image.draft("RGB", (max_side, max_side))
            image.load()  # a full decode: truncated or corrupt data fails here
    except Image.DecompressionBombError as error:
        raise DownloadFailed("too_large", str(error)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DownloadFailed("invalid_image", f"{type(error).__name__}: {error}") from None
    return encode_image(image, max_side=max_side)  # RGB, upright, transparency over white


class ImageCache:
    """Processed images on disk, one file per (URL, max side), written atomically.

    `DIR/<max_side>px/ab/abcdef....jpg` holds the image, `....fail` the reason of a permanent
    failure. A killed run leaves at most a `.tmp-*` file, which is never read as an entry.
    """

    def __init__(self, root: str | os.PathLike, max_side: int):
        self.root = Path(root) / f"{max_side}px"

    def _path(self, url: str, suffix: str) -> Path:
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.root / key[:2] / f"{key}{suffix}"

    def get(self, url: str) -> bytes | DownloadFailed | None:
        """The cached image, the cached permanent failure, or None when `url` was never finished."""
        try:
            return self._path(url, ".jpg").read_bytes()
        except FileNotFoundError:
            pass
        try:
            return DownloadFailed(self._path(url, ".fail").read_text().strip(), "cached failure")
        except FileNotFoundError:
            return None

    def put(self, url: str, value: bytes | DownloadFailed) -> None:
        if isinstance(value, DownloadFailed):
            path, data = self._path(url, ".fail"), value.reason.encode()
        else:
            path, data = self._path(url, ".jpg"), value
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(tmp, path)  # atomic: readers see the old state or the whole file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass
class Stats:
    """What the downloader did, for the progress bar and the build report."""

    fetched: int = 0  # downloaded in this run
    from_cache: int = 0
    failed: int = 0
    retries: int = 0

    def __post_init__(self):
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("fetched", "from_cache", "failed", "retries")}


def fetch(client: httpx.Client, url: str, config: DownloadConfig, stats: Stats) -> bytes:
    """GET `url` with retries; returns the body or raises `DownloadFailed`."""
    for attempt in range(config.retries + 1):
        try:
            return _get_once(client, url, config.max_bytes)
        except DownloadFailed as failure:
            if not failure.transient or attempt == config.retries:
                raise
        stats.add(retries=1)
        time.sleep(config.backoff * 2**attempt * (1 + 0.5 * random.random()))
    raise AssertionError("unreachable")


def _get_once(client: httpx.Client, url: str, max_bytes: int) -> bytes:
    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise DownloadFailed(f"http_{response.status_code}", url)
            if int(response.headers.get("content-length") or 0) > max_bytes:
                raise DownloadFailed("too_large", f"{response.headers['content-length']} bytes")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise DownloadFailed("too_large", f"more than {max_bytes} bytes")
            return bytes(body)
    except httpx.TimeoutException as error:
        raise DownloadFailed("timeout", f"{type(error).__name__} {url}") from None
    except httpx.TransportError as error:  # refused, reset, closed mid-body, DNS ...
        raise DownloadFailed("connection_error", f"{type(error).__name__} {url}") from None
    except httpx.InvalidURL as error:
        raise DownloadFailed("invalid_url", str(error)) from None


def ordered_map(
    function: Callable, items: Iterable, workers: int, window: int | None = None
) -> Iterator[tuple]:
    """Yield `(item, function(item))` in input order, with at most `window` items in flight.

    Input order makes a build deterministic (a rerun writes the same rows in the same order);
    the window keeps memory bounded however long `items` is. If the consumer stops (an error,
    Ctrl-C), queued work is cancelled and running work finishes, so nothing is left half-written.
    """
    window = window or 4 * workers
    pending: collections.deque[tuple[object, Future]] = collections.deque()
    executor = ThreadPoolExecutor(max_workers=workers)
    try:
        for item in items:
            pending.append((item, executor.submit(function, item)))
            if len(pending) >= window:
                done_item, future = pending.popleft()
                yield done_item, future.result()
        while pending:
            done_item, future = pending.popleft()
            yield done_item, future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


class DownloadRun:
    """One pass over a list of URLs: `run(urls)` yields `(url, image bytes or DownloadFailed)`
    in order, through the cache; `run.stats` holds the counts (during and after the pass).

    The progress bar shows the rate and, in its postfix, the cache hits and failures so far.
    """

    def __init__(self, cache: ImageCache, config: DownloadConfig):
        self.cache, self.config, self.stats = cache, config, Stats()

    def _one(self, client: httpx.Client, url: str) -> bytes | DownloadFailed:
        cached = self.cache.get(url)
        if cached is not None:
            self.stats.add(from_cache=1, failed=isinstance(cached, DownloadFailed))
            return cached
        try:
            data = fetch(client, url, self.config, self.stats)
            result = process_image(data, self.config.max_side, self.config.max_pixels)
        except DownloadFailed as failure:
            self.stats.add(fetched=1, failed=1)
            if not failure.transient:
                self.cache.put(url, failure)
            return failure
        self.cache.put(url, result)
        self.stats.add(fetched=1)
        return result

    def __call__(
        self,
        items: Iterable,
        *,
        url_of: Callable = lambda item: item,
        total: int | None = None,
        desc: str = "downloading images",
    ) -> Iterator[tuple]:
        """Yield `(item, image bytes or DownloadFailed)` for each item, in input order."""
        from tqdm.auto import tqdm

        limits = httpx.Limits(
            max_connections=self.config.workers, max_keepalive_connections=self.config.workers
        )
        with (
            httpx.Client(
                timeout=httpx.Timeout(self.config.timeout),
                limits=limits,
                follow_redirects=True,
                headers={"User-Agent": USER_AGENT},
            ) as client,
            tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True) as progress,
        ):
            results = ordered_map(
                lambda item: self._one(client, url_of(item)), items, workers=self.config.workers
            )
            for item, result in results:
                progress.update()
                progress.set_postfix(
                    cached=self.stats.from_cache, failed=self.stats.failed, refresh=False
                )
                yield item, result


class ImageRecords:
    """The last step every image source shares: `(row, image bytes or DownloadFailed)` pairs, as
    `ordered_map` and `DownloadRun` yield them, become dataset records; each drop is counted.

    Args:
        dropped: the counts by reason (`http_404`, `missing_file`, ...), updated as records stream.
        unique_images: also drop an image identical to an earlier one (`duplicate_image`).
        omit: row keys that are not dataset columns (a source's file name, say).
    """

    def __init__(
        self,
        dropped: collections.Counter,
        *,
        unique_images: bool = False,
        omit: tuple[str, ...] = (),
    ):
        self.dropped, self.unique_images, self.omit = dropped, unique_images, omit
        self.kept = 0
        self.seconds = 0.0  # set once the pairs are exhausted

    def __call__(self, pairs: Iterable[tuple[dict, bytes | DownloadFailed]]) -> Iterator[dict]:
        start, seen = time.perf_counter(), set()
        for row, result in pairs:
            if isinstance(result, DownloadFailed):
                self.dropped[result.reason] += 1
                continue
            if self.unique_images:
                # The same photo under two product ids would put one product in two splits (a leak).
                digest = hashlib.sha256(result).digest()
                if digest in seen:
                    self.dropped["duplicate_image"] += 1
                    continue
                seen.add(digest)
            self.kept += 1
            record = {k: v for k, v in row.items() if k not in self.omit}
            yield {**record, "image": {"bytes": result, "path": None}}
        self.seconds = time.perf_counter() - start


def download_file(url: str, destination: Path, timeout: float = 60.0) -> Path:
    """Stream a (large) file to `destination` atomically, with a progress bar; used for metadata URLs."""
    from tqdm.auto import tqdm

    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=".tmp-")
    try:
        with (
            os.fdopen(fd, "wb") as file,
            httpx.stream(
                "GET",
                url,
                timeout=timeout,
                follow_redirects=True,
                headers={"User-Agent": USER_AGENT},
            ) as response,
        ):
            response.raise_for_status()
            size = int(response.headers.get("content-length") or 0) or None
            with tqdm(
                total=size, desc=f"downloading {destination.name}", unit="B", unit_scale=True
            ) as bar:
                for chunk in response.iter_bytes(2**20):
                    file.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return destination


def add_image_arguments(parser) -> None:
    """`--max_side` and `--max_pixels`, shared by every source that processes images."""
    parser.add_argument(
        "--max_side",
        "--max-side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help=f"longest side of stored images in pixels (default: {DEFAULT_MAX_SIDE})",
    )
    parser.add_argument(
        "--max_pixels",
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images with more pixels: decompression bombs (default: {DEFAULT_MAX_PIXELS:,})",
    )
