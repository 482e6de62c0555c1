/* Unit tests of the pure modules: verdicts, formatting, configuration, JSON lines,
 * the reads word of a socket record. */
#include "check.h"

int checks_passed, checks_failed;

int main(void)
{
    test_verdict();
    test_format();
    test_config();
    test_json_line();
    test_netstat();
    test_reads();
    test_seen();
    test_forks();
    printf("unit: %d passed, %d failed\n", checks_passed, checks_failed);
    return checks_failed ? 1 : 0;
}
