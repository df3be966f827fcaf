"""`python -m hf_dataset COMMAND ...`: build, analyze or push a product dataset (see DESIGN.md for the contract)."""

import argparse
import sys

from . import amazon, analyze, folder, hub, synthetic
from .build import BuildError

# subcommand -> (module with add_arguments(parser) and main(args), one-line help)
COMMANDS = {
    "synthetic": (synthetic, "procedurally drawn products: the built-in demo and test dataset"),
    "amazon": (
        amazon,
        "Amazon Reviews 2023 item metadata (meta_Amazon_Fashion.jsonl): downloads images",
    ),
    "folder": (folder, "a folder of images plus a CSV (product_id, filename, caption[, rating])"),
    "analyze": (analyze, "look at a saved dataset: distributions, plots, leaks, baselines"),
    "push": (
        hub,
        "upload a built dataset folder (data, card, build report) to the Hugging Face Hub",
    ),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_dataset", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    module = COMMANDS[args.command][0]
    try:
        module.main(args)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
