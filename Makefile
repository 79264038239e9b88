# rdmabind: `make test` and `make demo` are the two commands (see README.md).
# Each installs what it needs on a fresh Debian 12 machine as root.

SHELL      := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO         ?= go
FUZZTIME   ?= 20s
GOFLAGS_TEST ?= -count=1

# The SoftRoCE harness (ci/softroce/run) and its make targets.
-include ci/softroce.mk
SOFTROCE_RUN ?= $(CURDIR)/ci/softroce/run

# Packages whose tests need an RDMA device. On a host with real RDMA devices
# they run directly; elsewhere inside a SoftRoCE guest with two rxe devices
# (the race detector stays on the host: under TCG it is too slow).
DEVICE_PKGS ?= ./cgo/rdmacm/ ./rdma/ ./bindcore/ ./cmd/rdmabind/
HAVE_RDMA   := $(shell test -c /dev/infiniband/rdma_cm && ls /sys/class/infiniband 2>/dev/null | head -1)

# SIGKILL iterations of the crash-safety tests: the registry's on the host
# plus bindcore's full Bind in the guest make 1000 per `make test`.
HOST_CRASH_ITERS  ?= 900
GUEST_CRASH_ITERS ?= 100

.PHONY: all test demo deps build lint unit fuzz device-test harness-test

all: build

deps:
	@ci/deps

build: deps
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build ./...

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files -o --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out" >&2; exit 1; fi
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) vet ./...
	@ci/check-cgo

# Host tests: pure logic everywhere; the root-only ones (BPF, shadow sockets,
# namespaces) run for real when make runs as root.
unit: deps
	RDMABIND_CRASH_ITERS=$(HOST_CRASH_ITERS) $(GO) test $(GOFLAGS_TEST) -race ./...

# Each fuzz target for a bounded time on top of its seed corpus.
fuzz: deps
	$(GO) test -run '^$$' -fuzz '^FuzzParseSockaddr$$' -fuzztime $(FUZZTIME) ./bindcore/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./bindcore/registry/

device-test: deps
ifneq ($(HAVE_RDMA),)
	RDMABIND_BIND_CRASH_ITERS=$(GUEST_CRASH_ITERS) $(GO) test $(GOFLAGS_TEST) $(DEVICE_PKGS)
else
	@$(MAKE) --no-print-directory softroce-prepare
	RDMABIND_BIND_CRASH_ITERS=$(GUEST_CRASH_ITERS) $(GO) test $(GOFLAGS_TEST) -p 1 -timeout 15m \
	  -exec '$(SOFTROCE_RUN) --nics 2 --timeout 900 --' $(DEVICE_PKGS)
endif

# The harness's own checks: exit codes, timeout, two NICs, two hosts (rping).
harness-test: deps
ifeq ($(HAVE_RDMA),)
	@$(MAKE) --no-print-directory softroce-selftest
else
	@echo "harness-test: this host has RDMA devices; the SoftRoCE harness is not needed"
endif

test: build lint unit fuzz harness-test device-test
	@echo "make test: all steps passed"

# The main job: on this host's RDMA devices, or in a SoftRoCE guest with two.
demo: build
	$(GO) build -o $(CURDIR)/bin/rdmabind ./cmd/rdmabind
ifneq ($(HAVE_RDMA),)
	@ci/deps busybox-static
	ci/demo $(CURDIR)/bin/rdmabind
else
	@$(MAKE) --no-print-directory softroce-prepare
	$(SOFTROCE_RUN) --nics 2 --timeout 300 -- ci/demo $(CURDIR)/bin/rdmabind
endif
