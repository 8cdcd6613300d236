# aopbatch: `make demo` shows the whole job against the built-in sandbox,
# `make test` runs every test. Nothing else to install but Go.
GO      ?= go
BIN     := bin/aopbatch
PKGS    := ./...
STATICCHECK_VERSION := 2025.1.1

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

clean:
	rm -rf bin aopbatch-demo
