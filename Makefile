# GoSIP: `make run` starts everything, `make test` tests everything.
SHELL := /bin/bash
CARGO ?= cargo
NPM ?= npm

.PHONY: run demo test test-rust test-ui test-system deps build-deps ui ui-deps build release bench lint fmt clean

run: ui release ## Build the UI and release binaries, start all five daemons
	scripts/run.sh target/release

demo: ui release ## run, plus the Twilio stand-in with scripted calls and messages
	GOSIP_DEMO=1 scripts/run.sh target/release

ui-deps:
	@cd web-ui && { [ -d node_modules ] && [ node_modules -nt package-lock.json ] || $(NPM) ci --no-audit --no-fund; }

ui: ui-deps
	cd web-ui && $(NPM) run build

build: build-deps
	$(CARGO) build --workspace --all-targets

release: build-deps
	$(CARGO) build --workspace --release --bins

deps: ## System packages the tests need (apt-get, as root)
	scripts/install-deps.sh

build-deps: ## What building needs: cmake, for mediad's Opus (apt-get, as root)
	scripts/install-deps.sh --build

test: deps ui build ## Every test: Rust unit/integration/system, web-ui, interop
	$(CARGO) test --workspace --no-fail-fast
	cd web-ui && $(NPM) test
	scripts/test-system.sh

bench: ui release
	scripts/bench.sh

lint: build-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The daemons' and tools' functions stay under 100 lines (clippy.toml);
	# a test may read as one scenario from top to bottom.
	$(CARGO) clippy --workspace --lib --bins -- -D warnings -W clippy::too_many_lines

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf web-ui/dist web-ui/node_modules
