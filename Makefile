# rstshim: `make` builds build/librstshim.so; `make test` runs every test;
# `make demo` shows what it catches.  Missing packages are installed first
# (as root) or named with the exact apt-get line.

CC ?= gcc
BUILD := build
.DEFAULT_GOAL := all
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Iinclude -pthread
SHIM_CFLAGS := $(CFLAGS_COMMON) -fPIC -fvisibility=hidden -ftls-model=initial-exec
SHIM_LDFLAGS := -shared -Wl,--version-script=shim/exports.map -Wl,--exclude-libs,ALL \
                -Wl,-z,now -Wl,-z,noexecstack -Wl,--no-undefined
SHIM_LIBS := -ldl

SHIM_SOURCES := $(wildcard shim/*.c)
SHIM_OBJECTS := $(SHIM_SOURCES:shim/%.c=$(BUILD)/shim/%.o) $(BUILD)/shim/vfork.o
SHIM := $(BUILD)/librstshim.so

# The pure modules, unit-tested without sockets.
PURE_SOURCES := shim/verdict.c shim/format.c shim/config.c shim/json_line.c shim/netstat_parse.c
UNIT_TEST := $(BUILD)/tests/unit_tests

# Hosts for the shim's own tests (tests/shim/).
SHIM_TEST_BINARIES := $(BUILD)/tests/shim_calls $(BUILD)/tests/libearly.so
$(BUILD)/tests/shim_calls: tests/shim/calls.c | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -o $@ $<
$(BUILD)/tests/libearly.so: tests/shim/early.c | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -fPIC -shared -o $@ $<

.PHONY: all deps test test-binaries test-unit test-build demo install clean
all: deps $(SHIM) $(TOOL_BIN)

# Everything the tests run.
test-binaries: $(SHIM) $(UNIT_TEST) $(SHIM_TEST_BINARIES) $(TOOL_BIN) $(DEMO_BINS)

deps:
	@scripts/ensure-deps.sh build

$(BUILD)/shim/%.o: shim/%.c $(wildcard include/*.h) | deps
	@mkdir -p $(@D)
	$(CC) $(SHIM_CFLAGS) -c $< -o $@

$(BUILD)/shim/vfork.o: shim/vfork.S
	@mkdir -p $(@D)
	$(CC) -c $< -o $@

$(SHIM): $(SHIM_OBJECTS) shim/exports.map
	$(CC) $(SHIM_LDFLAGS) -o $@ $(SHIM_OBJECTS) $(SHIM_LIBS)

$(UNIT_TEST): $(wildcard tests/unit/*.c) $(PURE_SOURCES) $(wildcard include/*.h) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -o $@ $(wildcard tests/unit/*.c) $(PURE_SOURCES)

-include tests/scenario/scenario.mk
include demo/demo.mk
include tool/tool.mk
include bench/bench.mk
include dist/dist.mk
-include tests/servers/servers.mk
-include tests/hardening/hardening.mk

test-unit: $(UNIT_TEST)
	$(UNIT_TEST)

test-build: $(SHIM)
	tests/build/check-library.sh $(SHIM)

test:
	@scripts/ensure-deps.sh test
	@$(MAKE) --no-print-directory test-binaries
	tests/run-all.sh

# The main job: every RST cause, reproduced under the shim and explained.
demo: deps
	@$(MAKE) --no-print-directory demo-run

install: all install-tool
	install -d $(DESTDIR)$(RSTSHIM_LIBDIR)
	install -m 0755 $(SHIM) $(DESTDIR)$(RSTSHIM_LIBDIR)/librstshim.so

clean:
	rm -rf $(BUILD)
