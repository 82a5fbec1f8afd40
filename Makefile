# Vigil build, test and benchmark entry points. `make test` is what CI runs.
GO      ?= go
GOFLAGS ?=
BIN     := bin/vigil
# What `vigil version` prints; make build, make install and the release builds
# (make image, make release-snapshot) set the same three: the tag, or the
# commit where no tag names it; the commit; and the commit's time, not the
# clock's, so that two builds of one commit are the same bytes. Evaluated
# once, so that a tree that changes during a build does not rename its files
# halfway.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)
VERSION := $(VERSION)
COMMIT  := $(COMMIT)
DATE    := $(DATE)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
# Every Go module in the repository; the SDK modules are kept separate so that
# services importing them never pull in the controller's dependencies.
MODULES := . sdk $(patsubst %/go.mod,%,$(wildcard sdk/*/go.mod)) deploy
# Modules whose tests run without the race detector: deploy's tests only
# render a chart and pack an image, and helm's and Kubernetes' packages built
# with -race would cost minutes of make test for nothing.
NORACE  := deploy

RELEASE_LDFLAGS = -s -w $(LDFLAGS)
# A release build of cmd/vigil: static (the image has no C library, and the
# SQLite driver is pure Go) and without paths of the build machine.
# $(call release-build,GOOS,GOARCH,OUTPUT)
release-build = CGO_ENABLED=0 GOOS=$(1) GOARCH=$(2) $(GO) build -trimpath -ldflags '$(RELEASE_LDFLAGS)' -o $(3) ./cmd/vigil
# Packs a linux binary into the image tarball, without a Docker daemon.
# $(call image-pack,GOARCH,BINARY,TARBALL)
image-pack = cd deploy && $(GO) run ./cmd/vigil-image -arch $(1) -binary $(abspath $(2)) -o $(abspath $(3)) \
	-version $(VERSION) -revision $(COMMIT) -created $(DATE)

.PHONY: build install test test-go test-js test-python lint-python test-e2e bench bench-otel bench-judge bench-scale lint demo fuzz clean image release-snapshot

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vigil

# vigil on PATH: into $(go env GOBIN), or $(go env GOPATH)/bin.
install:
	$(GO) install -ldflags '$(LDFLAGS)' ./cmd/vigil

# The tests that run vigil as a process share the binary make build wrote.
test: export VIGIL_TEST_BINARY = $(abspath $(BIN))
test: build test-js test-python test-go test-e2e

# The TypeScript SDK: dependencies from the committed lock file, a tsc build
# (the cross-language Go test runs the built dist), then node's test runner.
test-js:
	cd sdk/js && npm ci --no-audit --no-fund && npm run build && npm test

# The Python SDK (sdk/python): a virtual environment over Debian's python3
# that sees the packages .ci/run installed, checked against the pinned
# requirements-dev.txt, with the SDK installed as `pip install` would; then
# pytest (its cross-language tests run the vigil binary make build wrote).
PYTHON  ?= /usr/bin/python3
PYVENV  := sdk/python/.venv
PYVENVPY := $(PYVENV)/bin/python
$(PYVENVPY): sdk/python/requirements-dev.txt sdk/python/pyproject.toml
	rm -rf $(PYVENV)
	$(PYTHON) -m venv --system-site-packages $(PYVENV)
	$(PYVENVPY) -m pip install -q --no-index --no-deps -r sdk/python/requirements-dev.txt
	$(PYVENVPY) -m pip install -q --no-index --no-deps --no-build-isolation ./sdk/python
	rm -rf sdk/python/build

test-python: $(PYVENVPY)
	cd sdk/python && .venv/bin/python -m pytest -q -p no:cacheprovider

# ruff (its WebAssembly build) and pyright in strict mode, both from the npm
# registry at the versions sdk/python/tools/package-lock.json pins.
lint-python: $(PYVENVPY)
	cd sdk/python/tools && npm ci --no-audit --no-fund --silent
	cd sdk/python && node tools/ruff.mjs src tests bench
	cd sdk/python && node tools/node_modules/pyright/index.js --pythonpath .venv/bin/python

test-go:
	@set -e; for m in $(filter-out $(NORACE),$(MODULES)); do \
		echo "== go test $$m"; \
		(cd $$m && $(GO) test -race -count=1 -timeout 12m ./...); \
	done
	@set -e; for m in $(NORACE); do \
		echo "== go test $$m (no race detector)"; \
		(cd $$m && $(GO) test -count=1 -timeout 12m ./...); \
	done

# The rollout end-to-end tests (a fleet under load judged from a real
# Prometheus, kill -9 of a real vigil serve, and the console in headless
# Chromium over the demo's fleet) build without the race detector, whose
# overhead on two cores drowns the latency they measure. The console's
# screenshots land in bin/console-screenshots.
test-e2e:
	$(GO) test -count=1 -timeout 15m -run 'TestEndToEnd|TestKillNine' ./controller/runner
	$(GO) test -count=1 -timeout 6m -run 'TestDemo' ./cmd/vigil
	VIGIL_CONSOLE_SCREENSHOTS=$(abspath bin/console-screenshots) $(GO) test -count=1 -timeout 6m ./internal/e2e/console

bench:
	@set -e; for m in $(MODULES); do \
		(cd $$m && $(GO) test -run '^$$' -bench . -skip '^BenchmarkScale$$' -benchmem ./...); \
	done
	cd sdk/js && npm run build && npm run bench
	$(MAKE) --no-print-directory bench-scale

# The rollout loop at scale (internal/scalebench): N flags rolled out at
# once by the real controller, judged from its embedded metric store and
# from a real Prometheus, against a generator of the SDKs' cohort
# counters. Each run takes minutes on 2 cores, so it has its own timeout;
# copy the rows it logs into docs/benchmarks.md.
# make bench-scale SCALE_N=1000,10000 SCALE_ARGS='-scale.latency=false'
SCALE_N ?= 1000
SCALE_ARGS ?=
bench-scale:
	$(GO) test -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 2h ./internal/scalebench -args -scale.n $(SCALE_N) $(SCALE_ARGS)

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

lint: lint-python
	@set -e; out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done

# The container image for docker load or podman load: make image, or
# make image IMAGE_ARCH=arm64. deploy/image says what is in it.
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
IMAGE_BIN  ?= bin/linux_$(IMAGE_ARCH)/vigil
IMAGE      ?= bin/vigil-image-$(IMAGE_ARCH).tar
image:
	$(call release-build,linux,$(IMAGE_ARCH),$(IMAGE_BIN))
	$(call image-pack,$(IMAGE_ARCH),$(IMAGE_BIN),$(IMAGE))

# What a release publishes, built locally into dist/: an archive per
# platform, the images for linux, and their checksums (make -j2 builds two at
# a time). .goreleaser.yaml describes the same release for goreleaser.
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
DIST      ?= dist
RELEASE_FILES := $(foreach p,$(PLATFORMS),$(DIST)/vigil_$(VERSION)_$(subst /,_,$(p)).tar.gz) \
	$(foreach p,$(filter linux/%,$(PLATFORMS)),$(DIST)/vigil-image_$(VERSION)_$(notdir $(p)).tar)
release-snapshot:
	rm -rf $(DIST)
	$(MAKE) --no-print-directory VERSION=$(VERSION) COMMIT=$(COMMIT) DATE=$(DATE) $(RELEASE_FILES)
	cd $(DIST) && sha256sum $(notdir $(RELEASE_FILES)) > checksums.txt
	cat $(DIST)/checksums.txt

# The binaries stay beside their archives.
.SECONDARY:

# $* is OS_ARCH.
$(DIST)/vigil_$(VERSION)_%/vigil:
	$(call release-build,$(word 1,$(subst _, ,$*)),$(word 2,$(subst _, ,$*)),$@)

$(DIST)/vigil_$(VERSION)_%.tar.gz: $(DIST)/vigil_$(VERSION)_%/vigil
	cp README.md $(wildcard LICENSE) $(dir $<)
	tar -C $(DIST) -I 'gzip -n' --sort=name --mtime=$(DATE) --owner=0 --group=0 --numeric-owner -cf $@ $(notdir $(<D))

# $* is ARCH.
$(DIST)/vigil-image_$(VERSION)_%.tar: $(DIST)/vigil_$(VERSION)_linux_%/vigil
	$(call image-pack,$*,$<,$@)

demo: build
	$(BIN) demo

clean:
	rm -rf bin dist
