# The two commands the README promises, plus the pieces they are made of.
#   make test          installs the pinned test tools into .venv, then runs every check and test
#   make run           runs the proxy locally with the key file $(KEY_MAP_FILE)
#   make lambda-watch  the local Lambda loop: cargo lambda watch with the key file
#   make lambda-build  cargo lambda build --release for $(ARCH) (arm64 or x86-64)
#   make bench         the benchmark: what the proxy adds over a direct call (a few minutes)
#   make bench-peers   installs B13's peer (crabllm) into target/bench-peers; the bench then runs it
#   make soak          the soak: 256 streams + 200 req/s for $(SOAK_SECONDS) s, every byte checked
#   make fuzz          the fuzz targets (cargo-fuzz, libFuzzer) for $(FUZZ_SECONDS) s each

VENV := .venv
KEY_MAP_FILE ?= keys.example.json

ARCH ?= arm64
SOAK_SECONDS ?= 300
FUZZ_SECONDS ?= 300
# The test command's fuzz run: long enough to replay the corpus and explore a little.
FUZZ_SMOKE_SECONDS ?= 20
CARGO_FUZZ := $(CURDIR)/.tools/bin/cargo-fuzz
WATCH_PORT ?= 9000
TOOLS := $(CURDIR)/$(VENV)/bin

.PHONY: run test test-under-load check-tools test-deps lint bench bench-peers soak fuzz fuzz-smoke lambda-watch lambda-build

run:
	KEY_MAP_FILE=$(KEY_MAP_FILE) cargo run --release

NODE_SDK := tests/e2e/node

# What a fresh machine needs before `make test` builds anything; every missing one is named at
# once, instead of a failure half-way through (Node's SDK tests come after minutes of building).
check-tools:
	@missing=""; \
	for tool in cargo rustc python3 node npm c++; do \
		command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	cargo fmt --version >/dev/null 2>&1 || missing="$$missing rustfmt (rustup component add rustfmt)"; \
	cargo clippy --version >/dev/null 2>&1 || missing="$$missing clippy (rustup component add clippy)"; \
	python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "make test: missing on this machine:$$missing (see README.md, Quick start)" >&2; exit 1; \
	fi

test-deps: $(VENV)/.installed $(NODE_SDK)/node_modules/.installed

$(VENV)/.installed: tests/e2e/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
	touch $@

$(NODE_SDK)/node_modules/.installed: $(NODE_SDK)/package.json $(NODE_SDK)/package-lock.json
	cd $(NODE_SDK) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

# One profile (dev) and one target directory for clippy and the tests, so nothing builds twice.
# The benchmark runs as a short smoke only (its timing is no test); `make bench` is the real run.
test: check-tools test-deps lint
	OPENAI_PROXY_TEST_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test --locked
	cargo bench --locked --bench bench -- --smoke
	$(MAKE) fuzz-smoke

# cargo-fuzz builds on the stable toolchain with no sanitizer (-s none): libFuzzer's coverage
# guidance works, and the targets' own assertions are the oracle. Its build is instrumented, so
# it has a target directory of its own (fuzz/target).
$(CARGO_FUZZ):
	cargo install --locked --quiet cargo-fuzz@0.13.2 --root $(CURDIR)/.tools

# The test command with one CPU-burning process per core beside it, as on a busy CI machine. The
# burners are bounded in time and stopped when the run ends, however it ends.
test-under-load:
	@burners=""; \
	for core in $$(seq $$(nproc)); do \
		timeout 5400 sh -c 'while :; do :; done' & burners="$$burners $$!"; \
	done; \
	trap 'kill $$burners 2>/dev/null' EXIT INT TERM; \
	echo "test-under-load: $$(nproc) CPU burners running (pids$$burners)"; \
	$(MAKE) test

fuzz-smoke: $(CARGO_FUZZ)
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)

fuzz: $(CARGO_FUZZ)
	for target in $$($(CARGO_FUZZ) list); do \
		$(CARGO_FUZZ) run --sanitizer none $$target -- -max_total_time=$(FUZZ_SECONDS) -max_len=512 || exit 1; \
	done

bench: test-deps
	cargo bench --locked --bench bench

# B13's peer, measured beside the proxy in the same run. Installed into a folder of the bench's
# own under target/ (ignored by git, removed by cargo clean), never by the test command: the
# bench reports it as not installed instead. The stamp names the version, so a new pin reinstalls.
CRABLLM_VERSION := 0.0.25
BENCH_PEERS := $(CURDIR)/target/bench-peers

bench-peers: $(BENCH_PEERS)/crabllm-$(CRABLLM_VERSION).installed

$(BENCH_PEERS)/crabllm-$(CRABLLM_VERSION).installed:
	cargo install --locked --quiet --root $(BENCH_PEERS) crabllm@$(CRABLLM_VERSION)
	touch $@

soak: test-deps
	cargo bench --locked --bench bench -- --soak $(SOAK_SECONDS)

lambda-watch: $(VENV)/.installed
	@echo "SDK base_url: http://127.0.0.1:$(WATCH_PORT)/lambda-url/openai-proxy/v1  (wrapper keys from $(KEY_MAP_FILE))"
	PATH="$(TOOLS):$$PATH" cargo-lambda lambda watch --invoke-address 127.0.0.1 --invoke-port $(WATCH_PORT) \
		--env-var KEY_MAP_FILE=$(abspath $(KEY_MAP_FILE))

lambda-build: $(VENV)/.installed
	PATH="$(TOOLS):$$PATH" cargo-lambda lambda build --release --$(ARCH)
	@ls -l target/lambda/openai-proxy/bootstrap
