"""`python -m hf_dataset COMMAND ...`: build, analyze or push a product dataset (see docs/DESIGN.md for the contract)."""

import argparse
import sys

from . import amazon, analyze, cli, folder, hub, synthetic
from .build import BuildError

# Each entry: subcommand -> (module with add_arguments(parser) and main(args), one-line help).
# A source's main returns the dataset it built; every source then gets the same report, analysis
# and --push_to_hub (`cli`).
SOURCES = {
    "synthetic": (synthetic, "procedurally drawn products: the built-in demo and test dataset"),
    "amazon": (
        amazon,
        "Amazon Reviews 2023 item metadata (meta_Amazon_Fashion.jsonl): downloads images",
    ),
    "folder": (folder, "a folder of images plus a CSV (product_id, filename, caption[, rating])"),
}
TOOLS = {
    "analyze": (analyze, "look at a saved dataset: distributions, plots, leaks, baselines"),
    "push": (
        hub,
        "upload a built dataset folder (data, card, build report) to the Hugging Face Hub",
    ),
}
COMMANDS = {**SOURCES, **TOOLS}


class HELP_FORMAT(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows every option's default (unless its help already says it) and the description
    as written."""

    def _get_help_string(self, action):
        help = action.help or ""
        return help if "default" in help else super()._get_help_string(action)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hf_dataset", description=__doc__, formatter_class=HELP_FORMAT
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(
            name, help=help_text, description=help_text, formatter_class=HELP_FORMAT
        )
        module.add_arguments(sub)
        if name in SOURCES:
            cli.add_finish_arguments(sub)
    args = parser.parse_args(argv)
    module = COMMANDS[args.command][0]
    try:
        result = module.main(args)
        if args.command in SOURCES:
            cli.finish(args, result)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
