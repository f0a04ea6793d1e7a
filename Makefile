# The two commands the README promises, plus the pieces they are made of.
#   make test          installs the pinned test tools into .venv, then runs every check and test
#   make run           runs the proxy locally with the key file $(KEY_MAP_FILE)
#   make lambda-watch  the local Lambda loop: cargo lambda watch with the key file
#   make lambda-build  cargo lambda build --release for $(ARCH) (arm64 or x86-64)
#   make bench         the benchmark: what the proxy adds over a direct call (a few minutes)
#   make soak          the soak: 256 streams + 200 req/s for $(SOAK_SECONDS) s, every byte checked

VENV := .venv
KEY_MAP_FILE ?= keys.example.json

ARCH ?= arm64
SOAK_SECONDS ?= 300
WATCH_PORT ?= 9000
TOOLS := $(CURDIR)/$(VENV)/bin

.PHONY: run test test-deps lint bench soak lambda-watch lambda-build

run:
	KEY_MAP_FILE=$(KEY_MAP_FILE) cargo run --release

NODE_SDK := tests/e2e/node

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
test: test-deps lint
	OPENAI_PROXY_TEST_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test --locked
	cargo bench --locked --bench bench -- --smoke

bench: test-deps
	cargo bench --locked --bench bench

soak: test-deps
	cargo bench --locked --bench bench -- --soak $(SOAK_SECONDS)

lambda-watch: $(VENV)/.installed
	@echo "SDK base_url: http://127.0.0.1:$(WATCH_PORT)/lambda-url/openai-proxy/v1  (wrapper keys from $(KEY_MAP_FILE))"
	PATH="$(TOOLS):$$PATH" cargo-lambda lambda watch --invoke-address 127.0.0.1 --invoke-port $(WATCH_PORT) \
		--env-var KEY_MAP_FILE=$(abspath $(KEY_MAP_FILE))

lambda-build: $(VENV)/.installed
	PATH="$(TOOLS):$$PATH" cargo-lambda lambda build --release --$(ARCH)
	@ls -l target/lambda/openai-proxy/bootstrap
