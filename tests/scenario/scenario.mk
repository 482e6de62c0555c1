# Scenario tests: real servers under librstshim.so, every RST recorded on lo.
# Included by the top-level Makefile; defines no all/test/clean.

SCENARIO_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -pthread

build/tests/scenario_server: tests/scenario/server.c tests/scenario/scenario.mk
	@mkdir -p $(dir $@)
	$(CC) $(SCENARIO_CFLAGS) -o $@ $< -pthread

.PHONY: test-scenario
test-scenario: build/librstshim.so build/tests/scenario_server
	python3 tests/scenario/test_scenarios.py
