"""`python -m model_cards publish-space ...`: assemble the Gradio Space and upload it to the Hub;
`python -m model_cards resave DIR`: save an older model folder again with the current code."""

import argparse
import sys

from .resave import resave
from .space import PublishError, publish_space

DEFAULTS = argparse.ArgumentDefaultsHelpFormatter  # --help shows every default


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_cards", description=__doc__, formatter_class=DEFAULTS
    )
    commands = parser.add_subparsers(dest="command", required=True)
    space = commands.add_parser(
        "publish-space",
        formatter_class=DEFAULTS,
        help="assemble app.py, requirements, README and models into a Space and upload it",
        description="Assemble the Space folder and upload it with huggingface_hub. Local model folders "
        "are copied into the Space; Hub ids are passed to the app as Space variables.",
    )
    space.add_argument("--rating_model", help="rating model: a local folder or a Hub id")
    space.add_argument("--caption_model", help="caption model: a local folder or a Hub id")
    space.add_argument("--space_id", required=True, help="the Space, e.g. user/fashion-demo")
    space.add_argument("--dataset_id", help="the dataset's Hub id, listed in the Space metadata")
    space.add_argument("--output", help="write the Space folder here (required with --dry_run)")
    space.add_argument(
        "--dry_run", "--dry-run", action="store_true", help="only write what would be uploaded"
    )
    space.add_argument("--private", action="store_true", help="create the Space as private")
    space.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty --output folder"
    )
    again = commands.add_parser(
        "resave",
        formatter_class=DEFAULTS,
        help="save a model folder again with this version's code (pipeline() support included)",
        description="Load a rating or caption model folder with this package's classes and write "
        "the current code, config and processor files over the old ones; weights, card, metrics "
        "and plots stay.",
    )
    again.add_argument("folder", help="a saved rating or caption model folder")
    args = parser.parse_args(argv)
    try:
        print(resaved(args) if args.command == "resave" else published(args))
    except PublishError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def resaved(args: argparse.Namespace) -> str:
    return f"re-saved {args.folder}: {', '.join(resave(args.folder))}"


def published(args: argparse.Namespace) -> str:
    result = publish_space(
        rating_model=args.rating_model,
        caption_model=args.caption_model,
        space_id=args.space_id,
        dataset_id=args.dataset_id,
        output=args.output,
        dry_run=args.dry_run,
        private=args.private,
        overwrite=args.overwrite,
    )
    return f"wrote the Space folder {result}" if args.dry_run else f"published: {result}"


if __name__ == "__main__":
    sys.exit(main())
