"""The amazon source against a real HTTP server on 127.0.0.1 that serves images and injects faults.

The real 500-record sample (../shared/data) has its image URLs rewritten to the loopback server;
tests that need it skip without it. A committed excerpt (tests/fixtures, 6 real records) covers the
rest everywhere.
"""

import gzip
import hashlib
import html
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from PIL import Image

from hf_dataset import SPLITS, split_for
from hf_dataset.__main__ import main as cli
from hf_dataset.amazon import clean_title
from hf_dataset.download import DownloadFailed, process_image

from .conftest import REPO_ROOT
from .image_server import ImageServer, Reply, generated_size, huge_png, product_jpeg

TINY = REPO_ROOT / "tests" / "fixtures" / "amazon_fashion_tiny.jsonl"
# short network waits, and no figures: the analysis plots are test_analyze's
FAST = ["--timeout", "0.5", "--retries", "2", "--backoff", "0.02", "--workers", "8", "--no-plots"]


def local_path(url: str) -> str:
    """The loopback path standing for a real CDN URL (same URL -> same path: duplicates survive)."""
    return "/img/" + hashlib.sha1(url.encode()).hexdigest()[:20] + ".jpg"


def rewrite(source: Path, destination: Path, server: ImageServer, extra_lines=()) -> list[dict]:
    """Copy a metadata file with every image URL pointing at `server`; returns the records."""
    records = []
    with open(source) as src, open(destination, "w") as dst:
        for line in src:
            record = json.loads(line)
            for image in record["images"]:
                for field in ("thumb", "large", "hi_res"):
                    if image.get(field):
                        image[field] = server.url(local_path(image[field]))
            records.append(record)
            dst.write(json.dumps(record) + "\n")
        for line in extra_lines:
            dst.write(line + "\n")
    return records


def expected_main_images(records: list[dict], min_ratings: int) -> tuple[dict, int]:
    """What the filters should keep, written independently of the code under test:
    product_id -> (main image URL, caption, rating, rating_count), and the duplicate-URL count."""
    kept, seen_urls, duplicates = {}, set(), 0
    for record in records:
        if record["rating_number"] < min_ratings:
            continue
        main = next(i for i in record["images"] if i["variant"] == "MAIN")
        url = main["hi_res"] or main["large"]
        if url in seen_urls:
            duplicates += 1
            continue
        seen_urls.add(url)
        caption = " ".join(html.unescape(record["title"]).split())
        kept[record["parent_asin"]] = (
            url,
            caption,
            record["average_rating"],
            record["rating_number"],
        )
    return kept, duplicates


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def rows(folder: Path) -> list[dict]:
    dataset = datasets.load_from_disk(str(folder))
    return [dict(row, split=name) for name in SPLITS for row in dataset[name]]


@pytest.fixture
def server():
    with ImageServer() as server:
        yield server


@pytest.fixture(scope="module")
def fault_server():
    with ImageServer() as server:
        yield server


# --- the real sample with every fault ---------------------------------------------------------------

FAULTS = ["404", "500 then 200", "always 500", "slow", "dropped", "truncated", "html", "huge"]


@pytest.fixture(scope="module")
def faulty_build(fault_server, shared_data, tmp_path_factory):
    """Build the real sample (min 10 ratings: 197 products) with one product per fault."""
    server = fault_server
    tmp = tmp_path_factory.mktemp("amazon")
    good = Path(tmp) / "good.jsonl"
    records = rewrite(shared_data / "amazon_fashion_2023_sample.jsonl", good, server)
    # Records that the record filters must drop, one per reason.
    valid = next(r for r in records if r["rating_number"] >= 10)
    extra = [
        '{"parent_asin": "BROKEN", "title": "cut off',
        json.dumps({**valid, "parent_asin": "NOTITLE", "title": "  "}),
        json.dumps({**valid, "parent_asin": "NORATING", "average_rating": None}),
        json.dumps({**valid, "parent_asin": "NOIMAGE", "images": []}),
        json.dumps(valid),  # the same product again
        json.dumps({**valid, "parent_asin": "SAMEIMAGE"}),  # another product, same photo
    ]
    metadata = Path(tmp) / "meta.jsonl"
    rewrite(shared_data / "amazon_fashion_2023_sample.jsonl", metadata, server, extra)
    expected, duplicates = expected_main_images(records, min_ratings=10)
    assert len(expected) == 197

    # One product per fault, taken after the first (which is also used for the extra records).
    fault_of = dict(zip(FAULTS, list(expected)[1 : 1 + len(FAULTS)], strict=True))
    whole = product_jpeg(600, 800, seed=1)
    scripts = {
        "404": [Reply(404, b"gone", "text/html")],
        "500 then 200": [Reply(500, b"oops", "text/plain"), Reply(body=whole)],
        "always 500": [Reply(500, b"oops", "text/plain")],
        "slow": [Reply(body=whole, delay=1.2)],  # > the 0.5 s timeout, on every attempt
        "dropped": [Reply(drop=True)],
        "truncated": [Reply(body=whole[: len(whole) // 2])],
        "html": [Reply(body=b"<html><body>Robot check</body></html>", content_type="image/jpeg")],
        "huge": [Reply(body=huge_png(20_000, 20_000), content_type="image/png")],
    }
    for fault, product_id in fault_of.items():
        server.routes[path_of(expected[product_id][0])] = scripts[fault]
    server.reset()

    output = Path(tmp) / "dataset"
    argv = ["amazon", "--metadata", str(metadata), "--output", str(output), "--min-ratings", "10"]
    argv += ["--max-side", "128", "--cache-dir", str(Path(tmp) / "cache"), *FAST]
    start = time.perf_counter()
    assert cli(argv) == 0
    seconds = time.perf_counter() - start
    report = json.loads((output / "build_report.json").read_text())
    return {
        "output": output,
        "report": report,
        "expected": expected,
        "duplicates": duplicates,
        "fault_of": fault_of,
        "requests": dict(server.requests),
        "seconds": seconds,
    }


def test_report_counts_every_fault(faulty_build):
    report = faulty_build["report"]
    assert report["dropped_records"] == {
        "below_min_ratings": 500 - 197,
        "duplicate_product": 1,
        "malformed_line": 1,
        "no_image": 1,
        "no_rating": 1,
        "no_title": 1,
    }
    assert report["dropped_images"] == {
        "connection_error": 1,
        "duplicate_image": faulty_build["duplicates"] + 1,
        "http_404": 1,
        "http_500": 1,
        "invalid_image": 2,  # the truncated JPEG and the HTML page
        "timeout": 1,
        "too_large": 1,
    }
    good = len(faulty_build["expected"]) - 7  # every fault but "500 then 200" loses its product
    assert report["kept"]["total"] == report["kept_products"] == good
    downloads = report["downloads"]
    assert downloads["fetched"] == len(faulty_build["expected"]) and downloads["from_cache"] == 0
    # retries: 1 (500 then 200) + 2 each for always-500, slow and dropped; none for 4xx or bad bodies
    assert downloads["retries"] == 1 + 3 * 2


def test_retries_only_what_can_succeed(faulty_build):
    requests, expected = faulty_build["requests"], faulty_build["expected"]
    count = {f: requests[path_of(expected[p][0])] for f, p in faulty_build["fault_of"].items()}
    assert count == {
        "404": 1,
        "500 then 200": 2,
        "always 500": 3,
        "slow": 3,
        "dropped": 3,
        "truncated": 1,
        "html": 1,
        "huge": 1,
    }
    # Nothing else was requested twice, and nothing outside the kept products was requested.
    assert {p for p, n in requests.items() if n > 1} <= {
        path_of(expected[p][0]) for p in faulty_build["fault_of"].values()
    }
    assert set(requests) == {path_of(url) for url, *_ in expected.values()}


def test_every_good_product_with_its_rating_and_caption(faulty_build):
    expected = dict(faulty_build["expected"])
    for fault, product_id in faulty_build["fault_of"].items():
        if fault != "500 then 200":
            del expected[product_id]
    built = rows(faulty_build["output"])
    assert sorted(r["product_id"] for r in built) == sorted(expected)
    for row in built:
        url, caption, rating, rating_count = expected[row["product_id"]]
        assert row["split"] == split_for(row["product_id"])
        assert row["caption"] == caption and row["image_url"] == url
        assert row["rating"] == pytest.approx(rating) and row["rating_count"] == rating_count
        assert row["store"] and row["variant"] == "MAIN"
        image = row["image"]
        assert image.mode == "RGB" and image.format == "JPEG"
        if row["product_id"] != faulty_build["fault_of"]["500 then 200"]:
            width, height = generated_size(path_of(url))
            assert max(image.size) == min(max(width, height), 128)


def test_card_names_source_filters_and_license(faulty_build):
    card = (faulty_build["output"] / "README.md").read_text()
    assert "Amazon Reviews 2023" in card and "research use" in card
    assert "at least 10 ratings" in card and "license: other" in card
    assert '"http_404": 1' in card  # the build report is in the card


# --- resume -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_run_resumes_fetching_only_what_is_missing(server, shared_data, tmp_path):
    """SIGKILL a build mid-download, rerun it: only the missing images are fetched, and the result
    equals an uninterrupted build."""
    metadata = tmp_path / "meta.jsonl"
    rewrite(shared_data / "amazon_fashion_2023_sample.jsonl", metadata, server)
    args = [
        "--metadata",
        str(metadata),
        "--min-ratings",
        "0",
        "--max-products",
        "60",
        "--max-side",
        "96",
    ]
    args += FAST

    server.reset()
    assert (
        cli(["amazon", *args, "--output", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "ca")])
        == 0
    )
    wanted = set(server.requests)
    assert len(wanted) >= 55 and set(server.requests.values()) == {1}

    # Run B: killed once ~20 images are cached (the server holds every request after the 25th).
    server.reset()
    server.hold_after = 25
    cache = tmp_path / "cb"
    command = [sys.executable, "-m", "hf_dataset", "amazon", *args, "--output", str(tmp_path / "b")]
    process = subprocess.Popen(
        [*command, "--cache-dir", str(cache)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(cache.glob("*/*/*.jpg"))) < 20:
            assert process.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "the build never got going"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        server.release.set()
    assert not (tmp_path / "b").exists()  # nothing that looks like a dataset
    assert list(tmp_path.glob(".b.partial-*"))  # only hidden staging, which SIGKILL cannot clean
    cached = {p.stem for p in cache.glob("*/*/*.jpg")}
    assert 20 <= len(cached) <= 25

    server.reset()
    assert cli(["amazon", *args, "--output", str(tmp_path / "b"), "--cache-dir", str(cache)]) == 0
    digest = lambda path: hashlib.sha256(server.url(path).encode()).hexdigest()  # noqa: E731
    assert set(server.requests) == {p for p in wanted if digest(p) not in cached}
    assert set(server.requests.values()) == {1}

    assert not list(tmp_path.glob(".b.*"))  # the killed run's staging folders are cleaned up
    first, resumed = rows(tmp_path / "a"), rows(tmp_path / "b")
    assert [r["product_id"] for r in first] == [r["product_id"] for r in resumed]
    for a, b in zip(first, resumed, strict=True):
        assert a["image"].tobytes() == b["image"].tobytes()
        assert {k: v for k, v in a.items() if k != "image"} == {
            k: v for k, v in b.items() if k != "image"
        }
    report = json.loads((tmp_path / "b" / "build_report.json").read_text())
    assert report["downloads"]["from_cache"] == len(cached)
    assert report["downloads"]["fetched"] == len(wanted) - len(cached)


# --- everywhere (committed fixture) ----------------------------------------------------------------


def test_all_images_keeps_products_together(server, tmp_path):
    metadata = tmp_path / "meta.jsonl"
    records = rewrite(TINY, metadata, server)
    output = tmp_path / "all"
    argv = ["amazon", "--metadata", str(metadata), "--output", str(output), "--images", "all"]
    assert cli([*argv, "--max-side", "64", "--cache-dir", str(tmp_path / "c"), *FAST]) == 0
    built = rows(output)
    for record in records:
        urls = {i["hi_res"] or i["large"] for i in record["images"]}
        mine = [r for r in built if r["product_id"] == record["parent_asin"]]
        assert {r["image_url"] for r in mine} == urls
        assert {r["split"] for r in mine} == {split_for(record["parent_asin"])}
        assert {r["caption"] for r in mine} == {" ".join(html.unescape(record["title"]).split())}
    assert len(built) == sum(len({i["hi_res"] or i["large"] for i in r["images"]}) for r in records)


def test_gzipped_metadata_from_a_url(server, tmp_path):
    plain = tmp_path / "meta.jsonl"
    records = rewrite(TINY, plain, server)
    server.routes["/meta/meta_Amazon_Fashion.jsonl.gz"] = [
        Reply(body=gzip.compress(plain.read_bytes()), content_type="application/gzip")
    ]
    output = tmp_path / "gz"
    url = server.url("/meta/meta_Amazon_Fashion.jsonl.gz")
    assert (
        cli(["amazon", "--metadata", url, "--output", str(output), "--max-products", "3", *FAST])
        == 0
    )
    assert [r["parent_asin"] for r in records[:3]] == sorted(
        (r["product_id"] for r in rows(output)), key=[r["parent_asin"] for r in records].index
    )
    # The default cache sits beside the output, with the downloaded metadata.
    assert (tmp_path / "gz.cache" / "metadata" / "meta_Amazon_Fashion.jsonl.gz").is_file()


def test_user_errors_are_one_line(server, tmp_path, capsys):
    metadata = tmp_path / "meta.jsonl"
    rewrite(TINY, metadata, server)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    server.reset()
    cases = [
        ["--metadata", str(metadata), "--output", str(occupied)],
        ["--metadata", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "x")],
        [
            "--metadata",
            "hf://datasets/McAuley-Lab/Amazon-Reviews-2023/raw/meta.jsonl",
            "--output",
            str(tmp_path / "x"),
        ],
        ["--metadata", str(metadata), "--output", str(tmp_path / "x"), "--min-ratings", "100000"],
    ]
    for argv in cases:
        capsys.readouterr()
        assert cli(["amazon", *argv, *FAST]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert not server.requests  # refused before downloading anything
    assert (occupied / "keep.txt").read_text() == "mine"


def test_push_to_hub_offline_fails_cleanly_and_keeps_the_dataset(
    server, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metadata = tmp_path / "meta.jsonl"
    rewrite(TINY, metadata, server)
    output = tmp_path / "pushed"
    argv = ["amazon", "--metadata", str(metadata), "--output", str(output), *FAST]
    assert cli([*argv, "--push-to-hub", "someone/amazon-fashion", "--private"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: could not push to the Hub dataset someone/amazon-fashion")
    assert "intact" in err
    assert len(rows(output)) == 6  # the local dataset is whole
    assert cli(["push", str(output), "someone/amazon-fashion"]) == 2


# --- units -------------------------------------------------------------------------------------------


def test_clean_title():
    assert clean_title("  Tee &amp; Shorts\n\t Set ") == "Tee & Shorts Set"
    assert clean_title(None) == "" and clean_title("   ") == ""


def test_process_image_verifies_and_flattens_transparency():
    rgba = Image.new("RGBA", (500, 250), (255, 0, 0, 0))  # fully transparent red
    import io

    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    image = Image.open(io.BytesIO(process_image(buffer.getvalue(), max_side=100)))
    assert image.size == (100, 50) and image.mode == "RGB"
    assert min(image.getpixel((50, 25))) > 245  # white, not black
    for data, reason in [(b"<html>", "invalid_image"), (huge_png(), "too_large")]:
        with pytest.raises(DownloadFailed) as failure:
            process_image(data, max_side=100)
        assert failure.value.reason == reason


def test_no_leftover_partial_files(faulty_build):
    cache = faulty_build["output"].parent / "cache"
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]
    assert not list(faulty_build["output"].parent.glob(".dataset.*"))
    assert os.listdir(cache)  # the cache is kept for the next run


def test_nothing_downloadable_is_a_one_line_error(server, tmp_path, capsys):
    metadata = tmp_path / "meta.jsonl"
    for record in rewrite(TINY, metadata, server):
        for image in record["images"]:
            server.routes[path_of(image["hi_res"] or image["large"])] = [Reply(403, b"denied")]
    output = tmp_path / "none"
    assert cli(["amazon", "--metadata", str(metadata), "--output", str(output), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "error: none of the 6 images could be used ({'http_403': 6})"
    assert not output.exists() and not list(tmp_path.glob(".none.*"))


def test_push_uploads_card_report_and_data(server, tmp_path, monkeypatch):
    """The Hub calls and what they carry, recorded offline (the Hub itself cannot be reached here)."""
    from huggingface_hub import DatasetCard

    from hf_dataset import hub

    metadata = tmp_path / "meta.jsonl"
    rewrite(TINY, metadata, server)
    output = tmp_path / "built"
    assert cli(["amazon", "--metadata", str(metadata), "--output", str(output), *FAST]) == 0
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))
            return f"https://huggingface.co/datasets/{repo_id}"

        def create_commit(self, repo_id, operations, **kwargs):
            calls.append(("create_commit", repo_id, {o.path_in_repo: o for o in operations}))

    def fake_push(dataset, repo_id, **kwargs):
        calls.append(
            ("push_to_hub", repo_id, {name: len(split) for name, split in dataset.items()})
        )

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", fake_push)
    assert cli(["push", str(output), "me/fashion", "--private"]) == 0
    assert [c[0] for c in calls] == ["create_repo", "create_commit", "push_to_hub"]
    assert calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    files = calls[1][2]
    card = DatasetCard(files["README.md"].path_or_fileobj.decode())
    # The local Arrow layout is not the Hub's Parquet one: push_to_hub writes those entries.
    assert "configs" not in card.data.to_dict() and "dataset_info" not in card.data.to_dict()
    assert card.data.license == "other" and "Amazon Reviews 2023" in card.text
    assert files["build_report.json"].path_or_fileobj == str(output / "build_report.json")
    kept = json.loads((output / "build_report.json").read_text())["kept"]
    assert calls[2][2] == {name: kept[name] for name in SPLITS}
