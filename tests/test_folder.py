"""The folder + CSV source: a small generated folder with bad rows, and the real fashion_products."""

import csv
import hashlib
import json

import datasets
import pytest

from hf_dataset import SPLITS, split_for
from hf_dataset.__main__ import main as cli

from .image_server import huge_png, product_jpeg


def rows(folder):
    dataset = datasets.load_from_disk(str(folder))
    return [dict(row, split=name) for name in SPLITS for row in dataset[name]]


@pytest.fixture
def small_folder(tmp_path):
    """6 good images (one product has two), plus a missing, a corrupt and a huge file and bad rows."""
    images = tmp_path / "images"
    images.mkdir()
    table = [
        # product_id, filename, caption, rating, rating_count, brand
        ("p1", "p1.jpg", "Red  Summer Dress", "4.5", "12", "Acme"),
        ("p1", "p1-back.jpg", "Red  Summer Dress", "4.5", "12", "Acme"),
        ("p2", "p2.jpg", "Blue Jeans", "", "", "Denimco"),
        ("p3", "sub/p3.jpg", "Black Boots", "3", "7", ""),
        ("p4", "p4.jpg", "Green Scarf", "1.0", "1", "Acme"),
        ("p5", "p5.jpg", "White Tee", "5", "250", "Basics"),
        ("gone", "gone.jpg", "Missing Photo", "4", "3", "Acme"),
        ("bad", "bad.jpg", "Corrupt Photo", "4", "3", "Acme"),
        ("bomb", "bomb.png", "Huge Photo", "4", "3", "Acme"),
        ("norating", "p5.jpg", "Same file again", "4", "3", "Acme"),
        ("", "x.jpg", "No id", "4", "3", "Acme"),
        ("p6", "p6.jpg", "", "4", "3", "Acme"),
        ("p7", "p7.jpg", "Bad Rating", "7.5", "3", "Acme"),
    ]
    for i, name in enumerate(["p1.jpg", "p1-back.jpg", "p2.jpg", "sub/p3.jpg", "p4.jpg", "p5.jpg"]):
        (images / name).parent.mkdir(exist_ok=True)
        (images / name).write_bytes(product_jpeg(100 + 150 * i, 300, seed=i))
    (images / "bad.jpg").write_bytes(product_jpeg(300, 300)[:400])
    (images / "bomb.png").write_bytes(huge_png())
    with open(tmp_path / "metadata.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["product_id", "filename", "caption", "rating", "rating_count", "brand"])
        writer.writerows(table)
    return tmp_path


def test_small_folder_counts_every_drop(small_folder, tmp_path):
    output = tmp_path / "out"
    argv = ["folder", "--metadata", str(small_folder / "metadata.csv"), "--output", str(output)]
    assert cli([*argv, "--max-side", "256", "--no-plots"]) == 0
    assert (output / "analysis" / "analysis.json").is_file()
    assert not list((output / "analysis").glob("*.png"))  # --no-plots
    report = json.loads((output / "build_report.json").read_text())
    assert report["dropped"] == {
        "duplicate_file": 1,
        "invalid_image": 1,
        "invalid_rating": 1,
        "malformed_row": 2,
        "missing_file": 1,
        "too_large": 1,
    }
    assert report["kept"]["total"] == 6 and report["kept_products"] == 5
    built = rows(output)
    by_file = {(r["product_id"], r["image"].size[0]) for r in built}
    assert len(by_file) == 6
    for row in built:
        assert row["split"] == split_for(row["product_id"])
        assert max(row["image"].size) <= 256 and row["image"].mode == "RGB"
    p1 = [r for r in built if r["product_id"] == "p1"]
    assert len(p1) == 2 and p1[0]["caption"] == "Red Summer Dress"
    assert p1[0]["rating"] == 4.5 and p1[0]["rating_count"] == 12 and p1[0]["brand"] == "Acme"
    p2 = next(r for r in built if r["product_id"] == "p2")
    assert p2["rating"] is None and p2["rating_count"] is None


def test_exclude_leaves_out_the_listed_products(small_folder, tmp_path, capsys):
    """`--exclude`: ids from another folder's metadata.csv or a plain list; the report and the card
    say what was left out; a missing or empty list is a one-line error."""
    other = tmp_path / "other.csv"
    other.write_text("product_id,filename,caption\np1,x.jpg,X\np5,y.jpg,Y\nnot-here,z.jpg,Z\n")
    listed = tmp_path / "ids.txt"
    listed.write_text("# held out\np1\n\np5\n")
    argv = ["folder", "--metadata", str(small_folder / "metadata.csv"), "--no-plots"]
    for name, exclude in (("csv", other), ("txt", listed)):
        output = tmp_path / name
        assert cli([*argv, "--output", str(output), "--exclude", str(exclude)]) == 0
        assert {r["product_id"] for r in rows(output)} == {"p2", "p3", "p4"}
        report = json.loads((output / "build_report.json").read_text())
        assert report["excluded"] == {
            "file": str(exclude),
            "ids": 3 if name == "csv" else 2,
            "rows": 3,
        }
        assert (
            f"of the {report['excluded']['ids']} product ids in `{exclude.name}` are left out"
            in (output / "README.md").read_text()
        )
    (tmp_path / "empty.txt").write_text("# nothing\n")
    for bad in (tmp_path / "none.txt", tmp_path / "empty.txt"):
        capsys.readouterr()
        assert cli([*argv, "--output", str(tmp_path / "o"), "--exclude", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert bad.name in err and "\n" not in err, err
    assert not (tmp_path / "o").exists()


def test_missing_columns_and_folders_are_one_line_errors(small_folder, tmp_path, capsys):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("id,file\n1,a.jpg\n")
    cases = [
        ["--metadata", str(bad_csv), "--images", str(small_folder / "images")],
        ["--metadata", str(small_folder / "metadata.csv"), "--images", str(tmp_path / "nowhere")],
        ["--metadata", str(tmp_path / "none.csv")],
    ]
    for argv in cases:
        capsys.readouterr()
        assert cli(["folder", *argv, "--output", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
    assert not (tmp_path / "o").exists()


def test_real_fashion_products(shared_data, tmp_path):
    """The real catalogue photos build; a 300-product subset keeps the test fast."""
    folder = shared_data / "fashion_products"
    with open(folder / "metadata.csv", newline="") as file:
        table = {row["product_id"]: row for row in csv.DictReader(file)}
    # The catalogue lists a few photos twice under different ids: the first copy is kept.
    first, seen = [], set()
    for product_id in list(table)[:300]:
        digest = hashlib.sha256(
            (folder / "images" / table[product_id]["filename"]).read_bytes()
        ).digest()
        if digest not in seen:
            seen.add(digest)
            first.append(product_id)
    assert len(first) < 300  # the real data has such duplicates among its first 300 products
    output = tmp_path / "fashion"
    argv = ["folder", "--metadata", str(folder / "metadata.csv"), "--output", str(output)]
    assert cli([*argv, "--max-products", "300", "--no-plots"]) == 0
    report = json.loads((output / "build_report.json").read_text())
    assert report["kept"]["total"] == len(first)
    assert report["dropped"] == {"duplicate_image": 300 - len(first)}
    built = rows(output)
    assert {r["product_id"] for r in built} == set(first)
    for row in built:
        source = table[row["product_id"]]
        assert row["caption"] == " ".join(source["caption"].split())
        assert (row["category"], row["gender"], row["color"]) == (
            source["category"],
            source["gender"],
            source["color"],
        )
        assert row["rating"] is None and row["image"].size == (224, 224)
    card = (output / "README.md").read_text()
    assert "check its license" in card and "no ratings" in card


def test_image_records_keep_order_and_count_every_drop():
    """The stage both image sources share: failures and repeated photos dropped and counted."""
    import collections

    from hf_dataset.download import DownloadFailed, ImageRecords

    pairs = [
        ({"product_id": "a", "filename": "a.jpg"}, b"A"),
        ({"product_id": "b", "filename": "b.jpg"}, DownloadFailed("missing_file", "b.jpg")),
        ({"product_id": "c", "filename": "c.jpg"}, b"A"),  # the same photo as a
        ({"product_id": "d", "filename": "d.jpg"}, b"D"),
    ]
    dropped = collections.Counter({"malformed_row": 1})
    to_records = ImageRecords(dropped, unique_images=True, omit=("filename",))
    records = list(to_records(pairs))
    assert records == [
        {"product_id": "a", "image": {"bytes": b"A", "path": None}},
        {"product_id": "d", "image": {"bytes": b"D", "path": None}},
    ]
    assert dropped == {"malformed_row": 1, "missing_file": 1, "duplicate_image": 1}
    assert to_records.kept == 2 and to_records.seconds > 0
    # Without unique_images (amazon dedupes by URL before downloading) the copy is kept, row whole.
    kept = list(ImageRecords(collections.Counter())(pairs[:3]))
    assert [r["product_id"] for r in kept] == ["a", "c"] and kept[0]["filename"] == "a.jpg"
