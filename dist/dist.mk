# dist/dist.mk -- `make dist`: build/rstshim-$(RSTSHIM_VERSION).tar.gz, the shim
# to copy into any glibc system or image: the self-contained librstshim.so
# (jansson linked in and hidden: it needs glibc alone), the rstshim command
# and its man page.  `make test-dist` unpacks it into an empty directory and
# runs a server with it where no jansson library is visible (root; SKIP
# otherwise).  Included by the top-level Makefile AFTER tool/tool.mk (it uses
# RSTSHIM_VERSION, TOOL_BIN, TOOL_MAN); defines no all/test/clean.
#
# Tarball layout (bin/rstshim finds ../lib/rstshim/librstshim.so by itself):
#   rstshim-VERSION/README
#   rstshim-VERSION/bin/rstshim
#   rstshim-VERSION/lib/rstshim/librstshim.so
#   rstshim-VERSION/share/man/man1/rstshim.1

ifndef RSTSHIM_VERSION
$(error dist/dist.mk: include it after tool/tool.mk, which sets RSTSHIM_VERSION)
endif

DIST_NAME  := rstshim-$(RSTSHIM_VERSION)
DIST_TAR   := build/$(DIST_NAME).tar.gz
DIST_STAGE := build/dist/$(DIST_NAME)
# Reproducible: file times from the last commit (SOURCE_DATE_EPOCH wins).
DIST_EPOCH := $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null),0)

.PHONY: dist test-dist
dist: $(DIST_TAR)

$(DIST_TAR): build/librstshim.so $(TOOL_BIN) $(TOOL_MAN) dist/README.dist dist/dist.mk
	rm -rf build/dist
	install -d $(DIST_STAGE)/bin $(DIST_STAGE)/lib/rstshim $(DIST_STAGE)/share/man/man1
	install -m 0755 $(TOOL_BIN) $(DIST_STAGE)/bin/rstshim
	install -m 0755 build/librstshim.so $(DIST_STAGE)/lib/rstshim/librstshim.so
	install -m 0644 $(TOOL_MAN) $(DIST_STAGE)/share/man/man1/rstshim.1
	@glibc=$$(objdump -T build/librstshim.so $(TOOL_BIN) | grep -o 'GLIBC_[0-9.]*' \
	    | sed 's/GLIBC_//' | sort -uV | tail -n 1); \
	sed -e 's/@VERSION@/$(RSTSHIM_VERSION)/g' -e "s/@GLIBC@/$${glibc:-?}/g" \
	    dist/README.dist > $(DIST_STAGE)/README
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$(DIST_EPOCH) \
	    -C build/dist -cf - $(DIST_NAME) | gzip -9n > $@.tmp
	mv $@.tmp $@
	@echo "dist: $@"

test-dist: $(DIST_TAR)
	bash dist/test_dist.sh $(DIST_TAR)
