import os
from pathlib import Path

import pytest

# Tests never reach the Hub: every model, tokenizer and dataset they use is made here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "PYTEST_XDIST_WORKER" in os.environ:
    # `make test-fast` runs one worker per core: a thread each, not one per core each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one precision per process: each test starts and leaves it unset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the repo (../shared/data); tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """A small synthetic dataset (64 px, 60 products) shared by every test that only reads it."""
    from hf_dataset import synthetic

    path = tmp_path_factory.mktemp("data") / "synthetic"
    synthetic.build(path, num_products=60, seed=0, image_size=64)
    return path


def tiny_caption_config(tokenizer, **overrides):
    """A caption model config small enough for any test: timm's test_vit at 32 px, a 32-wide LSTM."""
    from benchmarks.random_models import TINY_CAPTION_CONFIG
    from modeling import ProductCaptionConfig

    kwargs = TINY_CAPTION_CONFIG | {"vocab_size": len(tokenizer)}
    return ProductCaptionConfig(**(kwargs | overrides))


def tensorboard_scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar in the TensorBoard event files under `log_dir`: tag -> {step: value}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for folder in sorted({path.parent for path in log_dir.rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(folder))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            found.setdefault(tag, {}).update({e.step: e.value for e in events.Scalars(tag)})
    return found


@pytest.fixture
def auto_loads(monkeypatch) -> list[tuple[str, bool]]:
    """What `AutoModel` / `AutoProcessor` / `AutoImageProcessor.from_pretrained` load while the test
    runs: (class name, whether `trust_remote_code` was passed)."""
    import transformers

    loaded = []
    for name in ("AutoModel", "AutoProcessor", "AutoImageProcessor"):
        auto_class = getattr(transformers, name)

        def spy(*args, _load=auto_class.from_pretrained, **kwargs):
            result = _load(*args, **kwargs)
            loaded.append((type(result).__name__, kwargs.get("trust_remote_code") is True))
            return result

        monkeypatch.setattr(auto_class, "from_pretrained", spy)
    return loaded
