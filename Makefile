# stylestream — the two commands a new machine needs: `make demo` and `make test`.
# Both install what is missing first (Debian/Ubuntu packages via apt-get).

SHELL := /bin/bash
MODELS_DIR ?= $(abspath $(CURDIR)/../shared/models)
DEMO_DIR ?= demo-output
# Where `make demo` fetches a zoo model when no local one exists (shared/ may be read-only).
ZOO_DIR ?= $(HOME)/.cache/stylestream/models
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export XDG_RUNTIME_DIR ?= /tmp
export STYLESTREAM_MODELS_DIR ?= $(MODELS_DIR)

# ffmpeg + dev libraries (video stages), clang/pkg-config (ffmpeg-next bindings), Mesa's
# lavapipe Vulkan driver (the GPU code runs on the CPU where no GPU is present), RabbitMQ,
# Node.js + npm (Azurite, the Azure Blob emulator the store tests use; npm only when the
# command is missing: NodeSource's nodejs bundles it and conflicts with Debian's npm),
# Chromium (tests/status_page.rs renders the status page headless).
APT_PACKAGES := ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
	libswresample-dev libavfilter-dev libavdevice-dev pkg-config clang libclang-dev \
	mesa-vulkan-drivers libvulkan1 vulkan-tools rabbitmq-server time nodejs chromium \
	$(if $(shell command -v npm),,npm) $(if $(shell python3 -m pip --version 2>/dev/null),,python3-pip)

.PHONY: deps pydeps services build test demo bench bench-onnx clean

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:" $$missing; \
		$(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with https://rustup.rs"; exit 1; }

# Python packages of the tests (onnx builds the test models, onnxruntime is the oracle; moto's
# server is the local S3): installed only when they cannot be imported / `moto_server` is missing.
pydeps:
	@{ python3 -c 'import onnx, onnxruntime, numpy' 2>/dev/null && command -v moto_server >/dev/null; } || \
		PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet -r requirements-test.txt

# Services the tests talk to: RabbitMQ on 127.0.0.1:5672, Azurite on 127.0.0.1:10000 and an
# S3 server (moto) on 127.0.0.1:9000, each started if it is not running
# (`scripts/azurite.sh stop`, `scripts/s3.sh stop` stop them again).
services: deps pydeps
	@scripts/azurite.sh start   # installs azurite@3.37.0 into .tools/ (git-ignored) when missing
	@scripts/s3.sh start        # moto[server], pinned in requirements-test.txt
	@if ! rabbitmqctl -q status >/dev/null 2>&1; then \
		echo "starting rabbitmq-server"; rabbitmq-server -detached; \
		for i in $$(seq 1 60); do rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1 && break; sleep 1; done; \
	fi

build: deps
	cargo build --release

# Benches run once each as tests first; the integration tests last. A test whose precondition
# does not hold here says `skipped: <test>: <why>` (tests/common `skip`) into SKIP_LOG; the total
# closes the log, so a skip is never a silent pass.
SKIP_LOG := $(CURDIR)/target/skipped.txt
test: export STYLESTREAM_SKIP_LOG := $(SKIP_LOG)
test: deps pydeps services
	@mkdir -p target && rm -f $(SKIP_LOG)
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test --benches
	cargo test --doc
	cargo test --lib --bins --tests
	@n=$$(cat $(SKIP_LOG) 2>/dev/null | wc -l); echo "tests skipped: $$n"; cat $(SKIP_LOG) 2>/dev/null || true

# The demo: a short sample video with sound (ffmpeg test sources), styled with a shared model
# (or STYLESTREAM_MODEL), audio copied; plus one still frame in every shared style side by side.
demo: deps
	@model="$${STYLESTREAM_MODEL:-$(MODELS_DIR)/udnie.safetensors}"; \
	if [ ! -f "$$model" ] && [ -z "$${STYLESTREAM_MODEL:-}" ]; then \
		zoo="$(ZOO_DIR)/mosaic.onnx"; \
		if [ ! -f "$$zoo" ]; then \
			echo "No local model in $(MODELS_DIR): fetching the ONNX model zoo's mosaic (6.6 MB) into $(ZOO_DIR)..."; \
			cargo build --release --quiet && mkdir -p "$(ZOO_DIR)" && \
			target/release/stylestream models fetch mosaic --dir "$(ZOO_DIR)" || true; \
		fi; \
		[ -f "$$zoo" ] && model="$$zoo"; \
	fi; \
	if [ ! -f "$$model" ]; then \
		echo "No style model found, and none could be downloaded."; \
		echo "  Looked for: $$model and $(ZOO_DIR)/mosaic.onnx"; \
		echo "  Do one of:"; \
		echo "    - with internet access: target/release/stylestream models fetch mosaic --dir $(ZOO_DIR)"; \
		echo "      (or download mosaic-9.onnx from github.com/onnx/models, validated/vision/style_transfer/"; \
		echo "      fast_neural_style/model/, check its sha256 against README.md, save it as $(ZOO_DIR)/mosaic.onnx)"; \
		echo "    - set STYLESTREAM_MODEL=/path/to/style.safetensors or .onnx"; \
		echo "    - put the shared models (udnie, wave, scream, wreck .safetensors) in $(MODELS_DIR)"; \
		echo "  See README.md, sections 'Models' and 'Bring your own model'."; \
		exit 1; \
	fi; \
	set -e; cargo build --release; mkdir -p $(DEMO_DIR); \
	ffmpeg -loglevel error -y -f lavfi -i "mandelbrot=size=256x144:rate=12:start_scale=0.5" \
		-f lavfi -i "sine=frequency=330:sample_rate=44100" -t 2.5 -c:v libx264 -pix_fmt yuv420p -c:a aac \
		$(DEMO_DIR)/sample.mp4; \
	target/release/stylestream stylize $(DEMO_DIR)/sample.mp4 -o $(DEMO_DIR)/sample-styled.mp4 --model "$$model" --progress bar; \
	echo "input:  $(CURDIR)/$(DEMO_DIR)/sample.mp4"; \
	echo "styled: $(CURDIR)/$(DEMO_DIR)/sample-styled.mp4 (model $$model, audio copied)"; \
	ffmpeg -loglevel error -y -i $(DEMO_DIR)/sample.mp4 -frames:v 1 $(DEMO_DIR)/still.png; \
	styles=""; for s in udnie wave scream wreck; do \
		if [ -f "$(MODELS_DIR)/$$s.safetensors" ]; then \
			target/release/stylestream stylize $(DEMO_DIR)/still.png -o $(DEMO_DIR)/still-$$s.png --model $(MODELS_DIR)/$$s.safetensors --quiet; \
			styles="$$styles -i $(DEMO_DIR)/still-$$s.png"; fi; done; \
	if [ -n "$$styles" ]; then \
		n=$$(( $$(echo $$styles | wc -w) / 2 + 1 )); \
		ffmpeg -loglevel error -y -i $(DEMO_DIR)/still.png $$styles -filter_complex "hstack=inputs=$$n" $(DEMO_DIR)/styles.png; \
		echo "first frame in every style (input first): $(CURDIR)/$(DEMO_DIR)/styles.png"; fi

# Speed of the network on this machine's adapter, then the criterion benches.
bench: deps
	cargo run --release -- bench --model udnie --size 640x360 --frames 3
	cargo bench

# Same network, same weights, in ONNX Runtime on the CPU, in the same run: speed ratio and a
# second numerical cross-check (pip packages pinned in scripts/requirements-bench.txt).
bench-onnx: build
	PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet -r scripts/requirements-bench.txt
	python3 scripts/bench_onnxruntime.py --size 640x360 --frames 3 \
		--stylestream target/release/stylestream --stylestream-image-check

clean:
	cargo clean
	rm -rf $(DEMO_DIR)
