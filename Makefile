# zd — build, test and benchmark entry points. `make test` is the README's
# test command and what .ci/run runs.

SHELL       := /bin/bash
GO          ?= go
MODULE      := github.com/zdtools/zd
VERSION     ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X $(MODULE)/pkg/cli/cmdkit.version=$(VERSION)
BIN         := bin
PROGRAMS    := zd-run zd-handoff zd-snapshot zd-queue zdctl
# 60m: a bound for a hang, not a speed limit; -race on a busy 2-core machine
# (CI, or a laptop doing other work) takes pkg/proxy alone past 15 minutes.
TEST_FLAGS  ?= -race -count=1 -timeout 60m
FUZZTIME    ?= 10s
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $$($(GO) env GOPATH)/bin/staticcheck)
# h2spec has no go.mod: its releases are +incompatible versions.
H2SPEC_VERSION ?= v2.2.1+incompatible
H2SPEC      ?= $(shell command -v h2spec 2>/dev/null || echo $$($(GO) env GOPATH)/bin/h2spec)
H2SPEC_RUNS ?= 1

.PHONY: all build tools test lint fmt-check vet staticcheck shellcheck unit fuzz h2spec demo bench clean help

all: build

help:
	@echo "make build   build the five programs into ./$(BIN) (version $(VERSION))"
	@echo "make tools   build zd-load and the example apps into ./$(BIN)"
	@echo "make test    gofmt check, go vet, staticcheck, shellcheck, go test -race (incl. testscripts)"
	@echo "make lint    gofmt check, go vet, staticcheck, shellcheck scripts/*.sh"
	@echo "make fuzz    run every Fuzz target for FUZZTIME=$(FUZZTIME)"
	@echo "make h2spec  build, then run h2spec against a fresh zd-queue over h2c and TLS (H2SPEC_RUNS=$(H2SPEC_RUNS))"
	@echo "make demo    build, then run scripts/demo.sh"
	@echo "make bench   build, then run bench/run.sh (writes bench/RESULTS.md)"

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -buildvcs=auto -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(PROGRAMS))

# Helper binaries for the demo and the benchmarks: zd-load, the example apps,
# and tableflip-echo (its own module, so zd does not depend on tableflip).
tools:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -buildvcs=auto -ldflags '$(LDFLAGS)' -o $(BIN)/ ./bench/cmd/zd-load ./bench/cmd/zd-bench
	cd bench/tableflip-echo && $(GO) build -trimpath -o ../../$(BIN)/ .
	@for d in examples/echo; do \
		if [ -f $$d/main.go ]; then echo "$(GO) build -o $(BIN)/ ./$$d"; \
			$(GO) build -trimpath -buildvcs=auto -ldflags '$(LDFLAGS)' -o $(BIN)/ ./$$d || exit 1; fi; \
	done

test: lint unit

lint: fmt-check vet staticcheck shellcheck

fmt-check:
	@echo "== gofmt"
	@files=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

vet:
	@echo "== go vet"
	$(GO) vet ./...

staticcheck:
	@echo "== staticcheck"
	@test -x "$(STATICCHECK)" || { echo "staticcheck not found: installing $(STATICCHECK_VERSION)"; \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); }
	$(STATICCHECK) ./...

# The deploy scripts must stay shellcheck-clean (scripts/.shellcheckrc lets it
# follow the shared zd-lib.sh). shellcheck is a Debian package (.ci/run).
shellcheck:
	@echo "== shellcheck"
	@command -v shellcheck >/dev/null || { echo "shellcheck not found: apt-get install shellcheck"; exit 1; }
	shellcheck scripts/*.sh

unit:
	@echo "== go test $(TEST_FLAGS) ./..."
	$(GO) test $(TEST_FLAGS) ./...

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# HTTP/2 conformance of zd-queue's own HTTP/2 server: every h2spec case over
# h2c and over TLS, against a freshly started zd-queue and examples/echo.
h2spec: build
	@test -x "$(H2SPEC)" || { echo "h2spec not found: installing $(H2SPEC_VERSION)"; \
		$(GO) install github.com/summerwind/h2spec/cmd/h2spec@$(H2SPEC_VERSION); }
	$(GO) build -trimpath -o $(BIN)/ ./examples/echo
	H2SPEC="$(H2SPEC)" H2SPEC_RUNS=$(H2SPEC_RUNS) ZD_QUEUE_BIN=$(BIN)/zd-queue ECHO_BIN=$(BIN)/echo ./scripts/h2spec.sh

demo: build tools
	ZD_DEMO_NO_BUILD=1 ./scripts/demo.sh

bench: build tools
	./bench/run.sh

clean:
	rm -rf $(BIN) bench/out
