# stylestream — the two commands a new machine needs: `make demo` and `make test`.
# Both install what is missing first (Debian/Ubuntu packages via apt-get).

SHELL := /bin/bash
MODELS_DIR ?= $(abspath $(CURDIR)/../shared/models)
DEMO_DIR ?= demo-output
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export XDG_RUNTIME_DIR ?= /tmp
export STYLESTREAM_MODELS_DIR ?= $(MODELS_DIR)

# ffmpeg + dev libraries (video stages), clang/pkg-config (ffmpeg-next bindings), Mesa's
# lavapipe Vulkan driver (the GPU code runs on the CPU where no GPU is present), RabbitMQ.
APT_PACKAGES := ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
	libswresample-dev libavfilter-dev libavdevice-dev pkg-config clang libclang-dev \
	mesa-vulkan-drivers libvulkan1 vulkan-tools rabbitmq-server time

.PHONY: deps services build test demo bench bench-onnx clean

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:" $$missing; \
		$(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with https://rustup.rs"; exit 1; }

# Services the tests talk to: RabbitMQ on 127.0.0.1:5672 (started if it is not running).
services: deps
	@if ! rabbitmqctl -q status >/dev/null 2>&1; then \
		echo "starting rabbitmq-server"; rabbitmq-server -detached; \
		for i in $$(seq 1 60); do rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1 && break; sleep 1; done; \
	fi

build: deps
	cargo build --release

# Benches run once each as tests first; the integration tests last, so their summary closes the log.
test: deps services
	cargo test --benches
	cargo test --doc
	cargo test --lib --bins --tests

demo: deps
	@model="$${STYLESTREAM_MODEL:-$(MODELS_DIR)/udnie.safetensors}"; \
	if [ ! -f "$$model" ]; then \
		echo "No style model found."; \
		echo "  Looked for: $$model"; \
		echo "  Set STYLESTREAM_MODEL=/path/to/style.safetensors, or put the shared models"; \
		echo "  (udnie, wave, scream, wreck .safetensors) in $(MODELS_DIR)."; \
		echo "  See README.md, section 'Models', for where they come from."; \
		exit 1; \
	fi; \
	set -e; cargo build --release; mkdir -p $(DEMO_DIR); \
	ffmpeg -loglevel error -y -f lavfi -i "mandelbrot=size=640x360:start_scale=0.5" -frames:v 1 $(DEMO_DIR)/sample.png; \
	target/release/stylestream stylize $(DEMO_DIR)/sample.png -o $(DEMO_DIR)/sample-styled.png --model "$$model"; \
	echo "input:  $(CURDIR)/$(DEMO_DIR)/sample.png"; \
	echo "styled: $(CURDIR)/$(DEMO_DIR)/sample-styled.png (model $$model)"; \
	styles=""; for s in udnie wave scream wreck; do \
		if [ -f "$(MODELS_DIR)/$$s.safetensors" ]; then \
			ffmpeg -loglevel error -y -i $(DEMO_DIR)/sample.png -vf scale=320:180 $(DEMO_DIR)/small.png; \
			target/release/stylestream stylize $(DEMO_DIR)/small.png -o $(DEMO_DIR)/small-$$s.png --model $(MODELS_DIR)/$$s.safetensors 2>/dev/null; \
			styles="$$styles -i $(DEMO_DIR)/small-$$s.png"; fi; done; \
	if [ -n "$$styles" ]; then \
		n=$$(( $$(echo $$styles | wc -w) / 2 + 1 )); \
		ffmpeg -loglevel error -y -i $(DEMO_DIR)/small.png $$styles -filter_complex "hstack=inputs=$$n" $(DEMO_DIR)/styles.png; \
		echo "all styles side by side (input first): $(CURDIR)/$(DEMO_DIR)/styles.png"; fi

# Speed of the network on this machine's adapter, then the criterion benches.
bench: deps
	cargo run --release -- bench --model udnie --size 640x360 --frames 3
	cargo bench

# Same network, same weights, in ONNX Runtime on the CPU, in the same run: speed ratio and a
# second numerical cross-check (pip packages pinned in scripts/requirements-bench.txt).
bench-onnx: build
	python3 -m pip install --quiet -r scripts/requirements-bench.txt
	python3 scripts/bench_onnxruntime.py --size 640x360 --frames 3 \
		--stylestream target/release/stylestream --stylestream-image-check

clean:
	cargo clean
	rm -rf $(DEMO_DIR)
