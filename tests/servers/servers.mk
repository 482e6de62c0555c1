# tests/servers/servers.mk -- real servers (nginx, haproxy, redis-server,
# python3 -m http.server, socat) under the shim, each provoking the RST it is
# known for; the shim's close lines are held against the RSTs recorded on lo.
# Included by the top-level Makefile; defines no all/test/clean.  Needs root
# (installs missing Debian packages, private network namespace); prints SKIP
# otherwise.  Reuses tests/scenario/harness.py.

.PHONY: test-servers
test-servers: build/librstshim.so
	python3 tests/servers/test_servers.py
