"""Gradio app for the fashion product models: a photo in, its star rating and product title out.

    python app.py                                  # the models `make demo` trains
    python app.py --rating_model outputs/rating --caption_model user/product-caption
    python app.py --host 0.0.0.0 --port 8080       # reachable from other machines

Each model is looked up in this order: the command-line flag, the environment variable
(`RATING_MODEL`, `CAPTION_MODEL`: how a Hub Space names its models), `models/rating` and
`models/caption` next to this file (where `python -m model_cards publish-space` copies local folders),
then `outputs/catalog/caption` (the caption model `make catalog` trains on real catalogue photos),
then `outputs/demo/rating` and `outputs/demo/caption` (what `make demo` trains on synthetic
drawings). A flag or variable may be a local folder or a Hub id. With one model the app serves that
one alone. It prints which models it serves and what each was trained on (from its model card), and
the page says so too, with a banner when a model was trained on synthetic data.

Tabs: Predict (one photo), Batch (many photos or a zip; a table, a CSV and a histogram), Compare (two
models of a kind side by side) and Model info (each model's card, metrics and plots). The pieces are
in `serving/`, which a Space runs with this file and nothing else of the repository.
"""

from __future__ import annotations

import argparse
import os
import sys

from serving.images import MAX_MEGAPIXELS  # standard library only: --help answers at once


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve the rating and caption models in a Gradio app (also the Hub Space entry point).",
        epilog=(
            "Each model comes from its flag, else its environment variable (RATING_MODEL, CAPTION_MODEL), "
            "else models/rating or models/caption next to app.py, else outputs/catalog/caption (`make "
            "catalog`), else the folders `make demo` trains (outputs/demo/rating, outputs/demo/caption)."
        ),
    )
    parser.add_argument(
        "--rating_model", metavar="PATH_OR_ID", help="rating model folder or Hub id"
    )
    parser.add_argument(
        "--caption_model", metavar="PATH_OR_ID", help="caption model folder or Hub id"
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on; 0.0.0.0 for other machines (default: 127.0.0.1, or $GRADIO_SERVER_NAME)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        help="default: 7860",
    )
    parser.add_argument(
        "--share", action="store_true", help="also serve a temporary public gradio.live link"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: one per core); 1 is steadier on a CPU other jobs share",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="run the models under bf16 autocast: about 1.4x faster photos on a CPU with AVX-512 "
        "BF16 or AMX (grep avx512_bf16 /proc/cpuinfo), slower on one without",
    )
    parser.add_argument(
        "--max_megapixels",
        type=float,
        default=MAX_MEGAPIXELS,
        help=f"refuse larger photos before decoding them (default: {MAX_MEGAPIXELS})",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch  # torch, transformers and gradio load only once the arguments are good

    from serving import ModelError, create_app, launch, load_model, missing_model_hint
    from serving.models import TASKS, resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    models = {}
    for task in TASKS:
        source = resolve_model(task, getattr(args, f"{task}_model"))
        if source is None:
            print(missing_model_hint(task).replace("`", ""), file=sys.stderr)
            continue
        print(f"loading the {task} model from {source}", file=sys.stderr)
        try:
            models[task] = load_model(task, source, bf16=args.bf16)
        except ModelError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"serving {models[task].describe()}", file=sys.stderr)
    if not models:
        print("error: no model to serve (see above)", file=sys.stderr)
        return 1
    demo = create_app(
        models.get("rating"), models.get("caption"), max_megapixels=args.max_megapixels
    )
    launch(demo, args.host, args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
