# The two commands the README promises, plus the pieces they are made of.
#   make test   installs the pinned test tools into .venv, then runs every check and test
#   make run    runs the proxy locally with the key file $(KEY_MAP_FILE)

VENV := .venv
KEY_MAP_FILE ?= keys.example.json

.PHONY: run test test-deps lint

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
test: test-deps lint
	OPENAI_PROXY_TEST_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test --locked
