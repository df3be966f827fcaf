"""bench_peers' trained decoders, greedy and beam 3: BLEU and title length per split, and whether
each decoder's beam search gives the same captions batched as one photo at a time.

    uv run python docs/studies/peers_decoding.py outputs/bench_peers/epochs12_bf16 \\
        --out benchmarks/results/bench_peers_decoding.json

Reads the decoders `bench_peers.py` saved (`RUNS/<name>_lr<lr>_seed<seed>/model.pt`) and the same
cached features, in the runs' precision.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import bench_peers  # noqa: E402


def scores(contender, data, precision: str) -> dict:
    out = {}
    for split in ("validation", "test"):
        for beams in (1, 3):
            titles = bench_peers.captions(contender, data, split, beams, precision)
            out[f"{split}_bleu_beams{beams}"] = bench_peers.bleu(data, split, titles)
            out[f"{split}_words_beams{beams}"] = sum(len(t.split()) for t in titles) / len(titles)
    return out


@torch.no_grad()
def same_batched_as_alone(contender, data, precision: str, rows: int = 64) -> int:
    memory, decode = data.memory["test"][:rows].float(), data.tokenizer.decode
    with bench_peers.autocast(precision == "bf16"):
        batched = contender.generate(memory, 3, 31)
        alone = [contender.generate(memory[i : i + 1], 3, 31)[0] for i in range(rows)]
    return sum(
        decode(b, skip_special_tokens=True) == decode(a, skip_special_tokens=True)
        for b, a in zip(batched, alone, strict=True)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "runs", type=Path, help="a bench_peers runs folder: --runs_dir/epochs<N>_<precision>"
    )
    p.add_argument("--dataset", default="outputs/catalog/dataset")
    p.add_argument("--cache_dir", default="outputs/feature_cache")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    epochs, precision = args.runs.name.removeprefix("epochs").split("_")
    recipe = {**bench_peers.RECIPE, "epochs": int(epochs)}
    data = bench_peers.load_data(args.dataset, args.cache_dir, recipe, precision)
    result = {}
    for folder in sorted(f for f in args.runs.iterdir() if (f / "model.pt").exists()):
        contender = bench_peers.load_trained(folder.name.split("_lr")[0], data, recipe, folder)
        result[folder.name] = {
            **scores(contender, data, precision),
            "same_test_captions_beam3_batched_as_alone_of_64": same_batched_as_alone(
                contender, data, precision
            ),
        }
        print(folder.name, result[folder.name], flush=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
