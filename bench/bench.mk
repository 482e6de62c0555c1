# bench/bench.mk -- `make bench` (under 5 minutes) and `make bench-quick`
# (under 60 s, no nginx): what the shim costs, as ratios of throughput with
# the shim to throughput bare, measured side by side.  Included by the
# top-level Makefile.  The bench reports; it never fails the build on a
# budget.  See bench/README.md.

BENCH_DIR    := build/bench
BENCH_BINS   := $(BENCH_DIR)/bench $(BENCH_DIR)/srv $(BENCH_DIR)/fdops $(BENCH_DIR)/libfloor.so
BENCH_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pthread

$(BENCH_DIR)/%: bench/%.c bench/common.h
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lm

# The floor rows' preload (bench/floor.c): the least any preload could do.
$(BENCH_DIR)/libfloor.so: bench/floor.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -fPIC -shared -fvisibility=hidden -o $@ $< -ldl

.PHONY: bench bench-quick bench-profile
bench: build/librstshim.so $(BENCH_BINS)
	@bash bench/ensure-tools.sh
	$(BENCH_DIR)/bench $(BENCH_DIR) build/librstshim.so $(BENCH_DIR)

bench-quick: build/librstshim.so $(BENCH_BINS)
	$(BENCH_DIR)/bench --quick $(BENCH_DIR) build/librstshim.so $(BENCH_DIR)

# Where the shim's time goes: perf (or callgrind) and strace -c on the churn
# and keep-alive servers, bare and shimmed.
bench-profile: build/librstshim.so $(BENCH_BINS)
	bash bench/profile.sh $(BENCH_DIR) build/librstshim.so
