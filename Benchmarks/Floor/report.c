/*
 * handoff-floor: statistics, resource usage and the JSON report on stdout.
 */
#include "floor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Nearest-rank percentile of a sorted sample. */
static uint64_t percentile(const uint64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > n) {
        rank = n;
    }
    return sorted[rank - 1];
}

void floor_stats_compute(uint64_t *samples, size_t n, floor_stats *out)
{
    if (n == 0) {
        *out = (floor_stats){0, 0, 0, 0, 0, 0};
        return;
    }
    qsort(samples, n, sizeof(samples[0]), compare_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += (double)samples[i];
    }
    out->p50 = floor_ms(percentile(samples, n, 0.50));
    out->p90 = floor_ms(percentile(samples, n, 0.90));
    out->p99 = floor_ms(percentile(samples, n, 0.99));
    out->min = floor_ms(samples[0]);
    out->max = floor_ms(samples[n - 1]);
    out->mean = sum / (double)n / 1e6;
}

/* VmHWM from /proc/self/status: the peak of this process image. getrusage's ru_maxrss is preserved
 * across execve, so a floor started by a large parent (handoff-bench after its bulk scenario) would
 * report the parent's peak as its own. Falls back to ru_maxrss where /proc is missing. */
long floor_peak_rss_kb(void)
{
    FILE *status = fopen("/proc/self/status", "r");
    if (status != NULL) {
        char line[256];
        long kb = -1;
        while (fgets(line, sizeof(line), status) != NULL) {
            if (strncmp(line, "VmHWM:", 6) == 0) {
                kb = strtol(line + 6, NULL, 10);
                break;
            }
        }
        fclose(status);
        if (kb >= 0) {
            return kb;
        }
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return -1;
    }
    return ru.ru_maxrss; /* kilobytes on Linux */
}

/* JSON: one object, keys in the order printed. Strings are the user's host/prefix/scenario:
 * escape the characters JSON requires. */
static bool json_first = true;

static void json_key(const char *key)
{
    printf("%s\"%s\": ", json_first ? "" : ", ", key);
    json_first = false;
}

static void json_string(const char *key, const char *value)
{
    json_key(key);
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            printf("\\%c", *p);
        } else if (*p < 0x20) {
            printf("\\u%04x", *p);
        } else {
            putchar(*p);
        }
    }
    putchar('"');
}

void floor_json_begin(const floor_options *opt, const char *scenario, long count, long size)
{
    json_first = true;
    putchar('{');
    json_string("scenario", scenario);
    json_string("host", opt->host);
    floor_json_int("port", opt->port);
    json_string("prefix", opt->prefix);
    floor_json_int("count", count);
    floor_json_int("size", size);
    floor_json_int("inflight", opt->inflight);
}

void floor_json_ms(const char *key, double ms)
{
    json_key(key);
    printf("%.3f", ms);
}

void floor_json_num(const char *key, double value)
{
    json_key(key);
    printf("%.3f", value);
}

void floor_json_int(const char *key, long value)
{
    json_key(key);
    printf("%ld", value);
}

void floor_json_bool(const char *key, bool value)
{
    json_key(key);
    printf("%s", value ? "true" : "false");
}

void floor_json_ms_array(const char *key, const uint64_t *ns, size_t n)
{
    json_key(key);
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        printf("%s%.3f", i == 0 ? "" : ", ", floor_ms(ns[i]));
    }
    putchar(']');
}

void floor_json_stats(const char *prefix, const floor_stats *s)
{
    char key[128];
    snprintf(key, sizeof(key), "%sp50_ms", prefix);
    floor_json_ms(key, s->p50);
    snprintf(key, sizeof(key), "%sp90_ms", prefix);
    floor_json_ms(key, s->p90);
    snprintf(key, sizeof(key), "%sp99_ms", prefix);
    floor_json_ms(key, s->p99);
    snprintf(key, sizeof(key), "%smax_ms", prefix);
    floor_json_ms(key, s->max);
    snprintf(key, sizeof(key), "%smin_ms", prefix);
    floor_json_ms(key, s->min);
    snprintf(key, sizeof(key), "%smean_ms", prefix);
    floor_json_ms(key, s->mean);
}

void floor_json_end(void)
{
    printf("}\n");
    fflush(stdout);
}
