# tests/hardening: the host never notices the shim, whatever it does (issue 5).
# Included by the top-level Makefile; defines no all/test/clean.
#
#   make test-hardening   threads against a model, signals, daemon(), spawn,
#                         SCM_RIGHTS, the log in trouble, errno, static and
#                         setuid binaries, security (tests/hardening/test_hardening.py)
#   make test-sanitize    the shim linked into the host under ASan+UBSan and
#                         under TSan, valgrind memcheck on a preloaded run, and
#                         libFuzzer on the configuration parser
#                         (tests/hardening/test_sanitize.py)

HARDENING_DIR := build/hardening
HARDENING_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -pthread -Iinclude
# The shim's sources linked into the host: the executable then defines
# close/recv/... itself; dlsym(RTLD_NEXT) finds the sanitizer's interceptor
# or libc behind them, as it finds libc behind the preloaded library.
HARDENING_SHIM_SRCS := $(wildcard shim/*.c) shim/vfork.S
HARDENING_SHIM_FLAGS := -fvisibility=hidden -ftls-model=initial-exec -fno-omit-frame-pointer
HARDENING_SHIM_LIBS := -ldl
HARDENING_HOST_SRC := tests/hardening/host.c

HARDENING_BINS := $(HARDENING_DIR)/host $(HARDENING_DIR)/host_static
HARDENING_SAN_BINS := $(HARDENING_DIR)/host_asan $(HARDENING_DIR)/host_asan_bare \
                      $(HARDENING_DIR)/host_tsan

$(HARDENING_DIR)/host: $(HARDENING_HOST_SRC) tests/hardening/hardening.mk
	@mkdir -p $(@D)
	$(CC) $(HARDENING_CFLAGS) -o $@ $(HARDENING_HOST_SRC)

# LD_PRELOAD cannot reach a static binary: the suite checks it runs unseen
# and that `rstshim --` warns about it.
$(HARDENING_DIR)/host_static: $(HARDENING_HOST_SRC) tests/hardening/hardening.mk
	@mkdir -p $(@D)
	$(CC) $(HARDENING_CFLAGS) -static -o $@ $(HARDENING_HOST_SRC)

$(HARDENING_DIR)/host_asan: $(HARDENING_HOST_SRC) $(HARDENING_SHIM_SRCS) $(wildcard include/*.h) \
                            tests/hardening/hardening.mk | deps
	@mkdir -p $(@D)
	$(CC) $(HARDENING_CFLAGS) $(HARDENING_SHIM_FLAGS) -fsanitize=address,undefined \
	    -fno-sanitize-recover=undefined -o $@ $(HARDENING_HOST_SRC) $(HARDENING_SHIM_SRCS) \
	    $(HARDENING_SHIM_LIBS)

# The same host under ASan without the shim: what "bare" means under ASan.
$(HARDENING_DIR)/host_asan_bare: $(HARDENING_HOST_SRC) tests/hardening/hardening.mk
	@mkdir -p $(@D)
	$(CC) $(HARDENING_CFLAGS) -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=undefined -o $@ $(HARDENING_HOST_SRC)

$(HARDENING_DIR)/host_tsan: $(HARDENING_HOST_SRC) $(HARDENING_SHIM_SRCS) $(wildcard include/*.h) \
                            tests/hardening/hardening.mk | deps
	@mkdir -p $(@D)
	$(CC) $(HARDENING_CFLAGS) $(HARDENING_SHIM_FLAGS) -fsanitize=thread -o $@ \
	    $(HARDENING_HOST_SRC) $(HARDENING_SHIM_SRCS) $(HARDENING_SHIM_LIBS)

.PHONY: test-hardening test-sanitize
test-hardening: build/librstshim.so build/rstshim $(HARDENING_BINS)
	python3 tests/hardening/test_hardening.py

# The libFuzzer harness (tests/hardening/fuzz_config.c) needs clang and its
# fuzzer runtime; test_sanitize.py builds it into build/hardening/ (installing
# libclang-rt-14-dev when root and missing) or prints SKIP.
test-sanitize: build/librstshim.so build/tests/shim_calls build/tests/scenario_server $(HARDENING_BINS) $(HARDENING_SAN_BINS)
	python3 tests/hardening/test_sanitize.py
