# Every target creates .venv when it is missing, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench netscale crash fuzz interop lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

# Your node, in the foreground: creates an identity on first use (you choose a
# passphrase), then joins the network. Ctrl-C stops it. Pass flags with ARGS=…
run: $(STAMP)
	$(BIN)/p2pmarket init --exist-ok
	$(BIN)/p2pmarket daemon $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m bench

# 10, 20 and 40 real daemons, each in its own network namespace, some behind NAT
# routers (root; installs nftables): gossip reach, DHT lookups, join sync, bytes per
# listing, relay share. ARGS="--write" updates its section of BENCHMARKS.md.
netscale: $(STAMP)
	$(BIN)/python -m bench.netscale $(ARGS)

# Every decoder of outside bytes, 100,000 seeded mutations and 3,000 hypothesis
# examples each; fails on any exception that is not one of our own refusals.
# Pass options with ARGS=…, e.g. ARGS="--seed 7 --only trade".
fuzz: $(STAMP)
	$(BIN)/python -m fuzz $(ARGS)

# kill -9 loops with real daemons (import, messaging, sync; ~5 min): prints what
# each lost of what it had acknowledged, and fails unless that is 0.
crash: $(STAMP)
	$(BIN)/python -m bench.crash

# A stock js-libp2p node (interop/, exact versions from its package-lock) joins
# real daemons: gossip both ways, DHT reads, a sealed direct message. Needs node
# and npm; the test runs `npm ci` once per lock file.
interop: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/interop/test_js_interop.py

lint: $(STAMP)
	$(BIN)/ruff check p2pmarket tests bench fuzz
	$(BIN)/ruff format --check p2pmarket tests bench fuzz
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
