/* rstshim: entry point and subcommand dispatch.
 *
 *   rstshim [run] [-o LOG] [--flagged] [--immediate-ms N] [--lib PATH] -- CMD [ARGS...]
 *   rstshim report [--json] [--top N] [--no-progress] [LOG...]
 *   rstshim doctor
 *   rstshim explain [--json] [--tolerance MS] CAPTURE LOG...
 *   rstshim explain -i IFACE [--duration S] [--json] [--tolerance MS] LOG...
 *   rstshim --help | --version
 *
 * Running a command is the default so that `rstshim -- server` reads like
 * `strace -- server`; a program literally named "report", "doctor" or "explain" is run
 * with `rstshim -- report`. */
#include <stdio.h>
#include <string.h>

#include "tool.h"

static void print_usage(FILE *out)
{
    fputs(
        "usage: rstshim [run] [-o LOG] [--flagged] [--immediate-ms N] [--lib PATH] -- CMD [ARGS...]\n"
        "       rstshim report [--json] [--top N] [--jobs N] [--no-progress] [LOG...]\n"
        "       rstshim doctor\n"
        "       rstshim explain [--json] [--tolerance MS] CAPTURE LOG...\n"
        "       rstshim explain -i IFACE [--duration S] [--json] [--tolerance MS] LOG...\n"
        "       rstshim --help | --version\n"
        "\n"
        "Find the closes of TCP connections that cost the peer an RST, and say why.\n"
        "\n"
        "run (default): run CMD with librstshim.so preloaded; one JSON line per TCP event.\n"
        "  -o, --output LOG     write the log to LOG (a file, %p = pid, 'stderr', 'stdout');\n"
        "                       a summary is printed on stderr when CMD ends\n"
        "  --flagged            log only flagged closes and errors (RSTSHIM_EVENTS=flagged)\n"
        "  --immediate-ms N     threshold of the immediate_close flag (default 100)\n"
        "  --lib PATH           preload this library instead of the one found beside\n"
        "                       rstshim or in " RSTSHIM_LIBDIR "\n"
        "  Signals (INT TERM HUP QUIT USR1 USR2) are passed to CMD; the exit status is\n"
        "  CMD's, or 128+N when a signal N killed it.\n"
        "\n"
        "report: summarise logs (stdin when no LOG): causes, RSTs per listener and per\n"
        "  peer, worst offenders, connection lifetimes, fix hints.\n"
        "  --json               one JSON document instead of text\n"
        "  --top N              rows in the per-listener/peer/offender tables (default 10)\n"
        "  --jobs N             parsing threads (default: one per CPU, at most 4)\n"
        "  --no-progress        no progress lines on stderr\n"
        "\n"
        "doctor: the limits and kernel counters of this host that decide RSTs.\n"
        "\n"
        "explain: every TCP RST in a capture (pcap/pcapng, e.g. tcpdump -i lo -w CAPTURE),\n"
        "  matched to the logs: caused by a close, answered data after a close, sent by\n"
        "  the peer, or not explained (with what the capture itself suggests: closed\n"
        "  port, no earlier packets, ...). Matched on the 4-tuple, then on time.\n"
        "  Ends with totals per verdict. Needs libpcap at run time.\n"
        "  --tolerance MS       how far apart an RST and its close may be (default 2000)\n"
        "  --json               one JSON line per RST, then a totals line\n"
        "  -i IFACE             live: capture on IFACE (root) and tail the logs\n"
        "  --duration S         live: stop after S seconds (default: at SIGINT/SIGTERM)\n"
        "\n"
        "See rstshim(1) for the log schema and the environment variables.\n",
        out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        print_usage(stdout);
        return 0;
    }
    if (!strcmp(sub, "--version") || !strcmp(sub, "version")) {
        printf("rstshim %s\n", RSTSHIM_VERSION);
        return 0;
    }
    if (!strcmp(sub, "report"))
        return cmd_report(argc - 1, argv + 1);
    if (!strcmp(sub, "doctor"))
        return cmd_doctor(argc - 1, argv + 1);
    if (!strcmp(sub, "explain"))
        return cmd_explain(argc - 1, argv + 1);
    if (!strcmp(sub, "run"))
        return cmd_run(argc - 1, argv + 1);
    /* Default: the arguments are run's options and command. */
    return cmd_run(argc, argv);
}
