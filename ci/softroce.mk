# The SoftRoCE test bed (ci/softroce/, docs/softroce.md), for the top-level
# Makefile to include:
#
#   include ci/softroce.mk
#   test-softroce: softroce-prepare
#   	go test -exec '$(SOFTROCE_RUN) --nics 2 --' ./pkg/...
#
# SOFTROCE_RUN runs a command in a qemu guest with rxe devices (run it with
# --help for its options). softroce-prepare installs the Debian packages it
# needs and fetches the guest kernel into /var/cache/rdmabind/softroce
# (RDMABIND_SOFTROCE_CACHE); it is quick when that is done already.
# softroce-selftest boots guests to check the harness itself (a few minutes).

# Included at the top of a Makefile, these targets must not become its default.
softroce_default_goal := $(.DEFAULT_GOAL)

SOFTROCE_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))/softroce
SOFTROCE_RUN := $(SOFTROCE_DIR)/run

.PHONY: softroce-prepare softroce-selftest

softroce-prepare:
	$(SOFTROCE_DIR)/prepare

softroce-selftest: softroce-prepare
	$(SOFTROCE_DIR)/selftest

.DEFAULT_GOAL := $(softroce_default_goal)
