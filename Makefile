# rdmabind: `make test` and `make demo` are the two commands (see README.md).
# Each installs what it needs on a fresh Debian 12 machine as root.

SHELL      := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO         ?= go
FUZZTIME   ?= 10s
GOFLAGS_TEST ?= -count=1

# The SoftRoCE harness (ci/softroce/run) and its make targets.
-include ci/softroce.mk
SOFTROCE_RUN ?= $(CURDIR)/ci/softroce/run

# Packages whose tests need an RDMA device. On a host with real RDMA devices
# they run directly; elsewhere inside a SoftRoCE guest with two rxe devices
# (the race detector stays on the host: under TCG it is too slow).
DEVICE_PKGS ?= ./cgo/rdmacm/ ./cgo/verbs/ ./rdma/ ./bindcore/ ./cmd/rdmabind/ ./bench/
# The guest kernels (ci/softroce/run --kernel): Debian 12's own 6.1 runs
# every device test; 6.12 (bookworm-security) runs DEVICE_PKGS_612,
# bindcore: the binds over rdma_cm and the kernel's TCP port space, the
# listens, steering with takeover, namespaces and crash safety (30
# iterations); the other device packages and the two-guest tests (about
# 4 minutes per kernel) run on 6.1 only, so that make test stays under 20
# minutes.
# DEVICE_KERNEL2_FULL=1 runs everything on 6.12 too.
DEVICE_PKGS_612 ?= ./bindcore/
DEVICE2_KERNEL ?= 6.1
HAVE_RDMA   := $(shell test -c /dev/infiniband/rdma_cm && ls /sys/class/infiniband 2>/dev/null | head -1)

# SIGKILL iterations of the crash-safety tests: the registry's on the host
# plus bindcore's full Bind in the guest make 1000 per `make test`.
HOST_CRASH_ITERS  ?= 950
GUEST_CRASH_ITERS ?= 50

# The bind-latency benchmark (docs/bench.md). bin/rdmabind is stamped with
# the version its results are recorded under in bench/history: a
# pseudo-version of the commit, "+dirty" when the tree has changes.
BENCH_VERSION ?= $(shell TZ=UTC git log -1 --abbrev=12 --format='v0.0.0-%cd-%h' --date=format-local:%Y%m%d%H%M%S 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo +dirty)
BENCH_COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
RDMABIND_LDFLAGS := -X github.com/rdmabind/rdmabind/bench.buildVersion=$(BENCH_VERSION) -X github.com/rdmabind/rdmabind/bench.buildCommit=$(BENCH_COMMIT)
BENCH_HISTORY ?= $(CURDIR)/bench/history
BENCH_PLOT    ?= $(CURDIR)/bin/bench.svg
BENCH_FLAGS   ?=
# BENCH_INJECT=bind=1.5 multiplies a measured ratio before bench-check
# compares it: the check's own test, from the command line.
BENCH_INJECT  ?=
# Where rdmabind bench runs: here on RDMA devices, else in the SoftRoCE guest.
ifneq ($(HAVE_RDMA),)
BENCH_RUN :=
else
BENCH_RUN := $(SOFTROCE_RUN) --nics 2 --timeout 300 --
endif

.PHONY: all test demo deps build lint unit fuzz device-test device-test-2hosts harness-test bench bench-check rdmabind-bin chaos bench-net capi install-capi capi-programs capi-test

all: build

deps:
	@ci/deps

# The module also builds off Linux without cgo (the _other.go stubs fail
# with ErrNotSupported), so that code importing it compiles on a laptop.
build: deps
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) build ./...
	GOOS=freebsd CGO_ENABLED=0 $(GO) build ./...

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files -o --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out" >&2; exit 1; fi
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) vet ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) vet ./...
	@ci/check-cgo

# Host tests: pure logic everywhere; the root-only ones (BPF, shadow sockets,
# namespaces) run for real when make runs as root. Then the registry's
# crash-safety and race tests again, in the default registry directory
# (/run/rdmabind as root; docs/security.md).
unit: deps
	RDMABIND_CRASH_ITERS=$(HOST_CRASH_ITERS) $(GO) test $(GOFLAGS_TEST) -race ./...
	RDMABIND_REGISTRY_TEST_DIR=default RDMABIND_CRASH_ITERS=100 $(GO) test $(GOFLAGS_TEST) -race \
	  -run '^(TestCrashSafety|TestClaimOrder|TestClaimRace.*)$$' ./bindcore/registry/

# Each fuzz target for a bounded time on top of its seed corpus.
fuzz: deps
	$(GO) test -run '^$$' -fuzz '^FuzzParseSockaddr$$' -fuzztime $(FUZZTIME) ./bindcore/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./bindcore/registry/
	$(GO) test -run '^$$' -fuzz '^FuzzParseHello$$' -fuzztime $(FUZZTIME) ./qp/
	$(GO) test -run '^$$' -fuzz '^FuzzRendezvous$$' -fuzztime $(FUZZTIME) ./qp/

device-test: deps
ifneq ($(HAVE_RDMA),)
	RDMABIND_BIND_CRASH_ITERS=$(GUEST_CRASH_ITERS) $(GO) test $(GOFLAGS_TEST) $(DEVICE_PKGS)
else
	@$(MAKE) --no-print-directory softroce-prepare
	@echo "device tests on the guest kernel 6.1"
	RDMABIND_BIND_CRASH_ITERS=$(GUEST_CRASH_ITERS) $(GO) test $(GOFLAGS_TEST) -p 1 -timeout 15m \
	  -exec '$(SOFTROCE_RUN) --kernel 6.1 --nics 2 --timeout 900 --' $(DEVICE_PKGS)
	@echo "device tests on the guest kernel 6.12"
	RDMABIND_BIND_CRASH_ITERS=30 $(GO) test $(GOFLAGS_TEST) -p 1 -timeout 15m \
	  -exec '$(SOFTROCE_RUN) --kernel 6.12 --nics 2 --timeout 900 --' $(if $(DEVICE_KERNEL2_FULL),$(DEVICE_PKGS),$(DEVICE_PKGS_612))
endif

# Packages whose tests need two hosts (qp/: connections between them). On a
# host with RDMA devices they skip (no peer host); elsewhere they run in two
# SoftRoCE guests, guest 2 started from the tests (about 1 min).
DEVICE2_PKGS ?= ./qp/ .

# examples/grpc is a module of its own (grpc-go is not a dependency of
# the library): its test runs gRPC over rdmabind across the two guests.
device-test-2hosts: deps capi-programs
ifneq ($(HAVE_RDMA),)
	RDMABIND_C_ECHO=$(CURDIR)/bin/c-echo $(GO) test $(GOFLAGS_TEST) $(DEVICE2_PKGS)
	cd examples/grpc && $(GO) test $(GOFLAGS_TEST) .
else
	@$(MAKE) --no-print-directory softroce-prepare
	RDMABIND_C_ECHO=$(CURDIR)/bin/c-echo $(GO) test $(GOFLAGS_TEST) -p 1 -timeout 10m \
	  -exec '$(SOFTROCE_RUN) --kernel $(DEVICE2_KERNEL) --hosts 2 --nics 1 --peer-ready none --timeout 600 --' $(DEVICE2_PKGS)
	# rdma link delete rxe0 under two connections (docs/lifecycle.md): it
	# destroys the device the other tests use, so it runs on its own.
	$(GO) test $(GOFLAGS_TEST) -p 1 -timeout 5m -run '^TestDeviceRemovalReleasesConnections$$' \
	  -exec '$(SOFTROCE_RUN) --kernel $(DEVICE2_KERNEL) --hosts 2 --nics 1 --peer-ready none --timeout 300 --' ./qp/
	cd examples/grpc && $(GO) test $(GOFLAGS_TEST) -p 1 -timeout 5m \
	  -exec '$(SOFTROCE_RUN) --kernel $(DEVICE2_KERNEL) --hosts 2 --nics 1 --peer-ready none --timeout 300 --' .
endif

# The net API's benchmarks (docs/netapi.md): the stream beside the qp
# connection under it, 64 B round trips and 1 MiB echo bandwidth, two guests.
bench-net: deps
	@$(MAKE) --no-print-directory softroce-prepare
	$(GO) test -count=1 -p 1 -run '^$$' -bench . -benchtime $${BENCHTIME:-500x} -timeout 20m \
	  -exec '$(SOFTROCE_RUN) --kernel $(DEVICE2_KERNEL) --hosts 2 --nics 1 --peer-ready none --timeout 1100 --' .

# Device chaos (docs/lifecycle.md): rxe0 deleted and added 100 times during
# a storm of binds, listens, dials and messages (make test runs 10 cycles).
chaos: deps
	@$(MAKE) --no-print-directory softroce-prepare
	RDMABIND_CHAOS_CYCLES=$${RDMABIND_CHAOS_CYCLES:-100} $(GO) test $(GOFLAGS_TEST) -v -p 1 -timeout 30m \
	  -run '^TestDeviceChaos$$' -exec '$(SOFTROCE_RUN) --nics 2 --timeout 1500 --' ./cmd/rdmabind/

# The harness's own checks: exit codes, timeout, two NICs, two hosts (rping).
harness-test: deps
ifeq ($(HAVE_RDMA),)
	@$(MAKE) --no-print-directory softroce-selftest
else
	@echo "harness-test: this host has RDMA devices; the SoftRoCE harness is not needed"
endif

test: build lint unit fuzz capi-test harness-test device-test device-test-2hosts bench-check
	@echo "make test: all steps passed"

# The C API (docs/capi.md): librdmabind.so (with its soname), rdmabind.h
# and rdmabind.pc in $(CAPI_DIR); install-capi copies them under PREFIX.
CAPI_VERSION := 0.1.0
CAPI_DIR ?= $(CURDIR)/bin/capi
CAPI_PREFIX ?= $(CURDIR)/bin/capi-prefix
capi: deps
	@ci/deps pkg-config
	@mkdir -p $(CAPI_DIR)
	$(GO) build -buildmode=c-shared -ldflags '-extldflags -Wl,-soname,librdmabind.so.0' \
	  -o $(CAPI_DIR)/librdmabind.so.$(CAPI_VERSION) ./cgo/capi
	@rm -f $(CAPI_DIR)/librdmabind.so.*.h
	ln -sf librdmabind.so.$(CAPI_VERSION) $(CAPI_DIR)/librdmabind.so.0
	ln -sf librdmabind.so.0 $(CAPI_DIR)/librdmabind.so
	cp cgo/capi/include/rdmabind.h $(CAPI_DIR)/

install-capi: capi
	@test -n "$(PREFIX)" || { echo "make install-capi PREFIX=DIR" >&2; exit 2; }
	install -d $(PREFIX)/include $(PREFIX)/lib/pkgconfig
	install -m 644 cgo/capi/include/rdmabind.h $(PREFIX)/include/
	install -m 755 $(CAPI_DIR)/librdmabind.so.$(CAPI_VERSION) $(PREFIX)/lib/
	ln -sf librdmabind.so.$(CAPI_VERSION) $(PREFIX)/lib/librdmabind.so.0
	ln -sf librdmabind.so.0 $(PREFIX)/lib/librdmabind.so
	sed -e 's|@PREFIX@|$(abspath $(PREFIX))|' -e 's|@VERSION@|$(CAPI_VERSION)|' cgo/capi/rdmabind.pc.in \
	  > $(PREFIX)/lib/pkgconfig/rdmabind.pc

# The C programs, built against the installed files (not the source tree)
# with pkg-config: the C API's test and examples/c's echo.
CAPI_PC = PKG_CONFIG_PATH=$(CAPI_PREFIX)/lib/pkgconfig pkg-config
capi-programs:
	rm -rf $(CAPI_PREFIX)
	@$(MAKE) --no-print-directory install-capi PREFIX=$(CAPI_PREFIX)
	gcc -std=c99 -Wall -Wextra -Werror -O2 -g -pthread -o $(CURDIR)/bin/capi_test cgo/capi/ctest/capi_test.c \
	  $$($(CAPI_PC) --cflags --libs rdmabind) -Wl,-rpath,$$($(CAPI_PC) --variable=libdir rdmabind)
	gcc -std=c99 -Wall -Wextra -Werror -O1 -g -pthread -fsanitize=address -fno-omit-frame-pointer \
	  -o $(CURDIR)/bin/capi_test_asan cgo/capi/ctest/capi_test.c \
	  $$($(CAPI_PC) --cflags --libs rdmabind) -Wl,-rpath,$$($(CAPI_PC) --variable=libdir rdmabind)
	gcc -std=c99 -Wall -Wextra -Werror -O2 -g -pthread -o $(CURDIR)/bin/c-echo examples/c/echo.c \
	  $$($(CAPI_PC) --cflags --libs rdmabind) -Wl,-rpath,$$($(CAPI_PC) --variable=libdir rdmabind)

# The C API's checks: on the host (no RDMA), and in a guest on rxe0.
# capi_test_asan is the same program under AddressSanitizer (with leak
# detection): errors in the C program's own code and leaks fail it.
capi-test: deps capi-programs
	$(CURDIR)/bin/capi_test host
	ASAN_OPTIONS=detect_leaks=1 $(CURDIR)/bin/capi_test_asan host
ifneq ($(HAVE_RDMA),)
	$(CURDIR)/bin/capi_test device $${RDMABIND_TEST_ADDR:?set RDMABIND_TEST_ADDR to an address an RDMA device serves}
	ASAN_OPTIONS=detect_leaks=1 $(CURDIR)/bin/capi_test_asan device $${RDMABIND_TEST_ADDR}
else
	@$(MAKE) --no-print-directory softroce-prepare
	$(SOFTROCE_RUN) --nics 1 --timeout 300 -- $(CURDIR)/bin/capi_test device 10.77.0.1
	$(SOFTROCE_RUN) --nics 1 --timeout 300 -- env ASAN_OPTIONS=detect_leaks=1 $(CURDIR)/bin/capi_test_asan device 10.77.0.1
endif

# The main job: on this host's RDMA devices, or in a SoftRoCE guest with two.
demo: build rdmabind-bin
	$(GO) build -o $(CURDIR)/bin/echo ./examples/echo
ifneq ($(HAVE_RDMA),)
	@ci/deps busybox-static
	ci/demo $(CURDIR)/bin/rdmabind
else
	@$(MAKE) --no-print-directory softroce-prepare
	$(SOFTROCE_RUN) --nics 2 --timeout 300 -- ci/demo $(CURDIR)/bin/rdmabind
endif

# bin/rdmabind, stamped with BENCH_VERSION.
rdmabind-bin: deps
	$(GO) build -ldflags '$(RDMABIND_LDFLAGS)' -o $(CURDIR)/bin/rdmabind ./cmd/rdmabind

# The bind-latency benchmark, full length: the table and the CDF plot
# (BENCH_PLOT). `make bench BENCH_FLAGS='--record bench/history'` records it.
bench: rdmabind-bin
ifeq ($(HAVE_RDMA),)
	@$(MAKE) --no-print-directory softroce-prepare
endif
	$(BENCH_RUN) $(CURDIR)/bin/rdmabind bench --plot $(BENCH_PLOT) $(BENCH_FLAGS)

# The short benchmark's p50 ratios (variant / floor) against the newest
# recorded run in bench/history; fails on a ratio worse than its tolerance.
bench-check: rdmabind-bin
ifeq ($(HAVE_RDMA),)
	@$(MAKE) --no-print-directory softroce-prepare
endif
	$(BENCH_RUN) $(CURDIR)/bin/rdmabind bench --short --check $(BENCH_HISTORY) $(if $(BENCH_INJECT),--inject $(BENCH_INJECT)) $(BENCH_FLAGS)
