# demo/demo.mk -- `make demo`: one server + client per RST cause, run under
# the shim by demo/run-demo.sh.  Included by the top-level Makefile.

DEMO_BINS   := build/demo/servers build/demo/clients
DEMO_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -pthread

build/demo/%: demo/%.c demo/common.c demo/common.h
	@mkdir -p $(@D)
	$(CC) $(DEMO_CFLAGS) -o $@ $< demo/common.c

.PHONY: demo-run
demo-run: build/librstshim.so build/rstshim $(DEMO_BINS)
	bash demo/run-demo.sh
