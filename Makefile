# Kiln — see README.md. Targets match what the README says.
GO ?= go
PKGS := ./...

.PHONY: run build test test-short lint bench fuzz clean

build: ## build bin/kiln (static, CGO_ENABLED=0)
	CGO_ENABLED=0 $(GO) build -o bin/kiln ./cmd/kiln

run: ## run kiln dev: one coordinator + one agent, API on 127.0.0.1:8776
	$(GO) run ./cmd/kiln dev

test: ## everything CI runs: deps, lint, race tests, short fuzzing
	bash scripts/test.sh

test-short: ## unit tests only, no race detector
	$(GO) test -short $(PKGS)

lint:
	bash scripts/lint.sh

bench: ## benchmarks with ratios against the anchors in docs/performance.md
	bash scripts/bench.sh

clean:
	rm -rf bin
