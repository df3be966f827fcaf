"""What `python -m hf_dataset SOURCE` does around every source's build, whichever the source.

Each source (synthetic, amazon, folder) parses its own arguments and builds its dataset; then the
same steps follow for all of them: a short report of what was built and dropped, the analysis
embedded into the dataset card, and, with `--push_to_hub`, the upload.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_finish_arguments(parser) -> None:
    """The options of `finish`, the steps after every source's build."""
    parser.add_argument(
        "--no_plots",
        "--no-plots",
        action="store_true",
        help="analyse without drawing the figures (the numbers and the card summary stay)",
    )
    parser.add_argument(
        "--push_to_hub",
        "--push-to-hub",
        metavar="REPO_ID",
        default=None,
        help="then upload it to this Hub dataset repo",
    )
    parser.add_argument("--private", action="store_true", help="with --push_to_hub: a private repo")


def print_report(output, dataset) -> None:
    """A few lines on what was built and what was dropped (the full counts are in the report)."""
    report = json.loads((Path(output) / "build_report.json").read_text())
    print(f"\nwrote {output}")
    for name, split in dataset.items():
        print(f"  {name:<10} {len(split):>7} rows")
    for key in ("dropped_records", "dropped_images", "dropped"):
        if report.get(key):
            print(
                f"  {key.replace('_', ' ')}: "
                + ", ".join(f"{k} {v}" for k, v in report[key].items())
            )
    if "downloads" in report:
        d = report["downloads"]
        print(
            f"  downloads: {d['fetched']} fetched, {d['from_cache']} from cache, {d['retries']} retries, "
            f"{d['images_per_second']} images/s"
        )
    if "oracle_r2" in report:  # the synthetic source knows the best achievable score
        noise = report["rating_model"]["noise_std"]
        print(f"  oracle R^2 {report['oracle_r2']} (noise std {noise})")


def finish(args, dataset) -> None:
    """Report, analyse the dataset into its card, and `--push_to_hub`: upload it (a failure leaves
    the local dataset intact)."""
    from .analyze import analyze, summary_lines

    print_report(args.output, dataset)
    drawn = "" if args.no_plots else "plots and "
    print(f"\nanalysis ({drawn}analysis.json in {Path(args.output) / 'analysis'}):")
    analysis = analyze(args.output, update_card=True, plots=not args.no_plots)
    print("\n".join(summary_lines(analysis)))
    if args.push_to_hub:
        from .hub import push_to_hub

        url = push_to_hub(args.output, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")
