# aopbatch: `make demo` shows the whole job against the built-in sandbox,
# `make test` runs every test. Nothing else to install but Go.
GO      ?= go
BIN     := bin/aopbatch
PKGS    := ./...
# staticcheck 2026.2.2 (module version v0.8.2, built against Go 1.26); the go
# command needs the module version: a release name like 2025.1.1 does not resolve.
STATICCHECK_VERSION := v0.8.2

.PHONY: build test demo lint fuzz bench clean

build:
	$(GO) build -o $(BIN) ./cmd/aopbatch

# The whole suite, race detector on (the pipeline is concurrent).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

demo:
	$(GO) run ./cmd/aopbatch demo

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

# Each fuzz target for FUZZTIME (go test -fuzz takes one target at a time).
FUZZTIME ?= 60s
fuzz:
	@set -e; for pkg in ./batch ./batch/aop ./reports; do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# Issue 6's measurements against the in-process sandbox on loopback: bare
# client ceiling, engine rows/s, peak RSS, rate adherence, resume, ledger
# size; then issue 13's against a provider as it really answers (slow,
# slowing, throttling, capped). Full size takes several minutes;
# BENCHFLAGS="-scale 0.01" is quick, BENCHFLAGS=-providers runs only
# issue 13's (about 4 minutes).
bench:
	$(GO) run ./cmd/aopbench $(BENCHFLAGS)

clean:
	rm -rf bin aopbatch-demo
