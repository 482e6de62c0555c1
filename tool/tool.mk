# tool/tool.mk -- the `rstshim` command; included by the top-level Makefile.
#
# The command never links the preload library: it only needs libc and a
# static libjansson, so the installed binary depends on glibc alone.
# `rstshim explain` needs libpcap: it is compiled against <pcap/pcap.h>
# (libpcap-dev) but opened with dlopen() when explain runs (Debian's static
# libpcap.a would drag in libdbus and libsystemd), so nothing else needs it.
#
# Install layout (variables the top-level `install` rule uses):
#   $(TOOL_BIN)            -> $(DESTDIR)$(BINDIR)/rstshim
#   build/librstshim.so    -> $(DESTDIR)$(RSTSHIM_LIBDIR)/librstshim.so
#   $(TOOL_MAN)            -> $(DESTDIR)$(MAN1DIR)/rstshim.1
# RSTSHIM_LIBDIR is compiled into the command as its fallback library path.

PREFIX          ?= /usr/local
BINDIR          ?= $(PREFIX)/bin
RSTSHIM_LIBDIR  ?= $(PREFIX)/lib/rstshim
MAN1DIR         ?= $(PREFIX)/share/man/man1
RSTSHIM_VERSION ?= 0.1.0

TOOL_BIN    := build/rstshim
TOOL_MAN    := man/rstshim.1
TOOL_SRCS   := $(wildcard tool/*.c)
TOOL_OBJS   := $(patsubst tool/%.c,build/tool/%.o,$(TOOL_SRCS))
TOOL_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -pthread -MMD -MP
TOOL_LDLIBS := -l:libjansson.a -lm -ldl
# Order-only prerequisite run before compiling: the top Makefile's `deps`
# installs libjansson-dev when it is missing.
TOOL_NEEDS  ?= deps
# The compiled-in paths and version, rewritten only when they change, so a
# `make install PREFIX=/opt` after `make` rebuilds the command for /opt.
TOOL_CONF   := build/tool/config.txt

$(TOOL_BIN): $(TOOL_OBJS)
	$(CC) $(TOOL_CFLAGS) -o $@ $(TOOL_OBJS) $(TOOL_LDLIBS)

build/tool/%.o: tool/%.c $(TOOL_CONF) | $(TOOL_NEEDS)
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -DRSTSHIM_LIBDIR='"$(RSTSHIM_LIBDIR)"' \
	    -DRSTSHIM_VERSION='"$(RSTSHIM_VERSION)"' -c -o $@ $<

$(TOOL_CONF): FORCE_TOOL_CONF
	@mkdir -p $(@D)
	@printf '%s\n' '$(RSTSHIM_LIBDIR)' '$(RSTSHIM_VERSION)' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

.PHONY: FORCE_TOOL_CONF test-tool install-tool

# The tool tests run the demo servers under the shim to get a real log.
test-tool: $(TOOL_BIN) $(DEMO_BINS) build/librstshim.so
	bash tests/tool/run.sh

# Optional helper for the top-level `install`.
install-tool: $(TOOL_BIN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MAN1DIR)
	install -m 0755 $(TOOL_BIN) $(DESTDIR)$(BINDIR)/rstshim
	install -m 0644 $(TOOL_MAN) $(DESTDIR)$(MAN1DIR)/rstshim.1

-include $(TOOL_OBJS:.o=.d)
