/* Unit tests of the pure modules: verdicts, formatting, configuration. */
#include "check.h"

int checks_passed, checks_failed;

int main(void)
{
    test_verdict();
    test_format();
    test_config();
    printf("unit: %d passed, %d failed\n", checks_passed, checks_failed);
    return checks_failed ? 1 : 0;
}
