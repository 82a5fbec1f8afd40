# Vigil build, test and benchmark entry points. `make test` is what CI runs.
GO      ?= go
GOFLAGS ?=
BIN     := bin/vigil
# What `vigil version` prints; release builds set the same three variables.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
# Every Go module in the repository; the SDK modules are kept separate so that
# services importing them never pull in the controller's dependencies.
MODULES := . sdk $(patsubst %/go.mod,%,$(wildcard sdk/*/go.mod))

.PHONY: build install test test-go test-js test-e2e bench bench-otel bench-judge lint demo fuzz clean

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vigil

# vigil on PATH: into $(go env GOBIN), or $(go env GOPATH)/bin.
install:
	$(GO) install -ldflags '$(LDFLAGS)' ./cmd/vigil

# The tests that run vigil as a process share the binary make build wrote.
test: export VIGIL_TEST_BINARY = $(abspath $(BIN))
test: build test-js test-go test-e2e

# The TypeScript SDK: dependencies from the committed lock file, a tsc build
# (the cross-language Go test runs the built dist), then node's test runner.
test-js:
	cd sdk/js && npm ci --no-audit --no-fund && npm run build && npm test

test-go:
	@set -e; for m in $(MODULES); do \
		echo "== go test $$m"; \
		(cd $$m && $(GO) test -race -count=1 -timeout 12m ./...); \
	done

# The rollout end-to-end tests (a fleet under load judged from a real
# Prometheus, and kill -9 of a real vigil serve) build without the race
# detector, whose overhead on two cores drowns the latency they measure.
test-e2e:
	$(GO) test -count=1 -timeout 6m -run 'TestEndToEnd|TestKillNine' ./controller/runner
	$(GO) test -count=1 -timeout 6m -run 'TestDemo' ./cmd/vigil

bench:
	@set -e; for m in $(MODULES); do \
		(cd $$m && $(GO) test -run '^$$' -bench . -benchmem ./...); \
	done
	cd sdk/js && npm run build && npm run bench

# The SDK's middleware benchmarks against another OpenTelemetry release, in a
# temporary copy of the sdk module (the service's metric SDK sets the cost of
# each histogram Record): make bench-otel OTEL=v1.44.0
OTEL ?= v1.44.0
bench-otel:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	tar -cf - --exclude=sdk/js sdk | tar -C "$$tmp" -xf -; \
	cd "$$tmp/sdk" && $(GO) get $(foreach m,otel otel/metric otel/trace otel/sdk otel/sdk/metric,go.opentelemetry.io/$(m)@$(OTEL)) && \
	$(GO) test -run '^$$' -bench 'Handler3Tracked|Middleware|OTelHistogramRecord' -benchmem -count 5 .

# The judge simulation: seeded, reproducible, a few minutes on 2 cores. It
# rewrites docs/judge-benchmark.md; commit the result.
bench-judge:
	GOMAXPROCS=2 $(GO) run ./analysis/judgebench -runs 2000 -seed 20261125 -out docs/judge-benchmark.md

# Every fuzz target for FUZZTIME each (go test -fuzz takes one target per
# run); the seed corpora also run, as plain tests, in make test.
FUZZTIME ?= 30s
fuzz:
	@set -e; for m in $(MODULES); do \
		(cd $$m && for pkg in $$($(GO) list ./...); do \
			for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
				echo "== $$pkg $$f"; \
				$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
			done; \
		done); \
	done

lint:
	@set -e; out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done

demo: build
	$(BIN) demo

clean:
	rm -rf bin
