/*
 * handoff-floor: the cost floor for swift-handoff.
 *
 * A bare program against libmosquitto's C API that sends the minimum MQTT traffic each
 * benchmark job needs: no Swift client, no envelope, no claim logic beyond "clear it".
 * See README.md for the scenarios and their exact traffic.
 */
#include "floor.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: handoff-floor --scenario {latency|bulk|large|contention} [--host H] [--port N]\n"
            "                     [--prefix TOPICPREFIX] [--count N] [--size BYTES] [--successors N]\n"
            "                     [--timeout SECONDS] [--inflight N] [--pace-us N] [--verbose]\n"
            "\n"
            "  --host        broker address (127.0.0.1)\n"
            "  --port        broker port (1883)\n"
            "  --prefix      topic prefix, unique per run (handoff-floor/<pid>-<time>)\n"
            "  --count       handoffs (latency 2000, bulk 10000, large 3, contention 1000)\n"
            "  --size        payload bytes (1024; large 16777216)\n"
            "  --successors  contention: successor clients (16)\n"
            "  --timeout     bound on every single wait, seconds (120)\n"
            "  --inflight    MOSQ_OPT_SEND_MAXIMUM and MOSQ_OPT_RECEIVE_MAXIMUM of every client (100)\n"
            "  --pace-us     contention: pause between second-half publishes, microseconds (10000)\n"
            "\n"
            "Prints one JSON object on stdout; exit 0 on success, 1 on failure, 2 on usage error,\n"
            "3 when contention finds disagreement or a lost handoff.\n");
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "handoff-floor: shutdown timed out\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
    _exit(1);
}

static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    static char default_prefix[96];
    floor_options opt = {
        .host = "127.0.0.1",
        .port = 1883,
        .scenario = NULL,
        .prefix = NULL,
        .count = -1,
        .size = -1,
        .successors = 16,
        .timeout_s = 120,
        .inflight = 100,
        .pace_us = 10000,
        .verbose = false,
    };

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        bool ok = true;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            opt.verbose = true;
            continue;
        } else if (v == NULL) {
            ok = false;
        } else if (strcmp(a, "--host") == 0) {
            opt.host = v;
        } else if (strcmp(a, "--port") == 0) {
            ok = parse_long(v, 1, 65535, &n);
            opt.port = (int)n;
        } else if (strcmp(a, "--scenario") == 0) {
            opt.scenario = v;
        } else if (strcmp(a, "--prefix") == 0) {
            opt.prefix = v;
        } else if (strcmp(a, "--count") == 0) {
            ok = parse_long(v, 1, 100000000, &opt.count);
        } else if (strcmp(a, "--size") == 0) {
            /* non-empty (empty is the clear), within MQTT's 256 MB packet limit */
            ok = parse_long(v, 1, 268435455 - 65536, &opt.size);
        } else if (strcmp(a, "--successors") == 0) {
            ok = parse_long(v, 1, 1000, &n);
            opt.successors = (int)n;
        } else if (strcmp(a, "--timeout") == 0) {
            ok = parse_long(v, 1, 86400, &n);
            opt.timeout_s = (double)n;
        } else if (strcmp(a, "--inflight") == 0) {
            ok = parse_long(v, 1, 65535, &n);
            opt.inflight = (int)n;
        } else if (strcmp(a, "--pace-us") == 0) {
            ok = parse_long(v, 0, 10000000, &opt.pace_us);
        } else {
            fprintf(stderr, "handoff-floor: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "handoff-floor: bad or missing value for %s\n", a);
            return 2;
        }
        i++;
    }
    if (opt.scenario == NULL) {
        fprintf(stderr, "handoff-floor: --scenario is required\n");
        usage(stderr);
        return 2;
    }
    if (opt.prefix == NULL) {
        snprintf(default_prefix, sizeof(default_prefix), "handoff-floor/%ld-%llu", (long)getpid(),
                 (unsigned long long)floor_now_ns());
        opt.prefix = default_prefix;
    }
    if (opt.prefix[0] == '\0' || strpbrk(opt.prefix, "+#") != NULL || strlen(opt.prefix) > 1000) {
        fprintf(stderr, "handoff-floor: --prefix must be a non-empty topic without wildcards\n");
        return 2;
    }

    int (*scenario)(floor_run *) = NULL;
    if (strcmp(opt.scenario, "latency") == 0) {
        scenario = floor_scenario_latency;
    } else if (strcmp(opt.scenario, "bulk") == 0) {
        scenario = floor_scenario_bulk;
    } else if (strcmp(opt.scenario, "large") == 0) {
        scenario = floor_scenario_large;
    } else if (strcmp(opt.scenario, "contention") == 0) {
        scenario = floor_scenario_contention;
    } else {
        fprintf(stderr, "handoff-floor: unknown scenario %s\n", opt.scenario);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    mosquitto_lib_init();
    floor_run run;
    if (floor_run_init(&run, &opt) != 0) {
        fprintf(stderr, "handoff-floor: cannot initialise locks\n");
        return 1;
    }
    int rc = scenario(&run);
    if (run.failed) {
        fprintf(stderr, "handoff-floor: %s: %s\n", opt.scenario, run.error);
        if (rc == 0) {
            rc = 1;
        }
    }
    floor_run_destroy(&run);
    mosquitto_lib_cleanup();
    return rc;
}
