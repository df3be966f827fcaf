"""One flag style across the commands: snake_case, as transformers' scripts, the older kebab-case
spelling still accepted; and `--help` shows the defaults."""

import re

import pytest

import app
import evaluate_models
import hf_dataset.__main__ as hf_dataset_cli
import model_cards.__main__ as model_cards_cli
import predict
import train_caption
import train_rating

COMMANDS = {
    "hf_dataset synthetic": lambda: hf_dataset_cli.main(["synthetic", "--help"]),
    "hf_dataset amazon": lambda: hf_dataset_cli.main(["amazon", "--help"]),
    "hf_dataset folder": lambda: hf_dataset_cli.main(["folder", "--help"]),
    "hf_dataset analyze": lambda: hf_dataset_cli.main(["analyze", "--help"]),
    "model_cards publish-space": lambda: model_cards_cli.main(["publish-space", "--help"]),
    "evaluate_models": lambda: evaluate_models.main(["--help"]),
    "app": lambda: app.parse_args(["--help"]),
    "train_rating": lambda: train_rating.main(["--help"]),
    "train_caption": lambda: train_caption.main(["--help"]),
    "predict": lambda: predict.main(["--help"]),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_are_snake_case_and_help_shows_defaults(command, capsys):
    with pytest.raises(SystemExit):
        COMMANDS[command]()
    text = capsys.readouterr().out
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", text))
    assert len(flags) > 1
    kebab = {flag for flag in flags if "-" in flag[2:]}
    lonely = {flag for flag in kebab if "--" + flag[2:].replace("-", "_") not in flags}
    assert not lonely, f"kebab-case flags without a snake_case spelling: {lonely}"
    assert re.search(r"\(default:\s", text)


def test_the_old_spelling_still_works():
    from hf_dataset import synthetic

    parser = hf_dataset_cli.argparse.ArgumentParser()
    synthetic.add_arguments(parser)
    old = parser.parse_args(["--output", "x", "--num-products", "7", "--image-size", "48"])
    new = parser.parse_args(["--output", "x", "--num_products", "7", "--image_size", "48"])
    assert vars(old) == vars(new) and new.num_products == 7
