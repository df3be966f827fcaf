# The README's commands. Each bootstraps uv (python3 -m pip install uv) when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --no-sync
OUT ?= outputs/demo
DEMO_PRODUCTS ?= 1000
SERVE ?= 1

.PHONY: demo test lint sync

sync:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --locked

demo: sync
	$(RUN) python -m hf_dataset synthetic --output $(OUT)/dataset --num-products $(DEMO_PRODUCTS) --overwrite
	@if [ "$(SERVE)" = "0" ]; then \
		echo "demo outputs in $(OUT)/: dataset, rating_model, caption_model. Serve them with:"; \
		echo "  uv run python app.py --rating_model $(OUT)/rating_model --caption_model $(OUT)/caption_model"; \
	else \
		$(RUN) python app.py --rating_model $(OUT)/rating_model --caption_model $(OUT)/caption_model; \
	fi

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .

test: lint
	$(RUN) pytest
