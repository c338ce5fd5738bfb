/*
 * large: sequential rounds of one big retained handoff.
 *
 * Round i: predecessor PUBLISH (QoS 1, retain, `size` bytes, default 16 MiB) on
 * <prefix>/l/<i>; the successor (subscribed to <prefix>/l/# at QoS 1) receives it and
 * PUBLISHes the zero-length retained QoS 1 clear; the broker delivers the clear back.
 * end_to_end_ms is the median round; peak_rss_kb is this process (both clients) at the end,
 * baseline_rss_kb the same figure with both clients connected and before the payload exists.
 */
#include "floor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int floor_scenario_large(floor_run *run)
{
    const floor_options *opt = run->opt;
    long count = opt->count > 0 ? opt->count : 3;
    long size = opt->size > 0 ? opt->size : 16777216;
    floor_rounds rounds = {0};
    uint64_t *samples = calloc((size_t)count, sizeof(uint64_t));
    char *payload = NULL;
    long baseline_rss_kb = -1;
    int rc = 1;

    if (samples == NULL) {
        floor_fail(run, "out of memory");
        goto out;
    }
    if (floor_rounds_open(&rounds, run, "large", "l", size) != 0) {
        goto out;
    }
    baseline_rss_kb = floor_peak_rss_kb();

    payload = malloc((size_t)size);
    if (payload == NULL) {
        floor_fail(run, "out of memory for a %ld-byte payload", size);
        goto out;
    }
    for (long i = 0; i < size; i++) {
        payload[i] = (char)(i * 31 + 7);
    }
    floor_log(opt, "large: %ld rounds of %ld bytes", count, size);

    if (floor_rounds_run(&rounds, payload, count, samples) != 0) {
        goto out;
    }
    rc = 0;

out:
    floor_rounds_close(&rounds);
    if (rc == 0 && !run->failed) {
        long peak_rss_kb = floor_peak_rss_kb();
        floor_json_begin(opt, "large", count, size);
        floor_json_ms_array("rounds_ms", samples, (size_t)count);
        floor_stats s;
        floor_stats_compute(samples, (size_t)count, &s);
        floor_json_ms("end_to_end_ms", s.p50);
        floor_json_num("mb_per_second", (double)size / 1e6 / (s.p50 / 1e3));
        floor_json_int("baseline_rss_kb", baseline_rss_kb);
        floor_json_int("peak_rss_kb", peak_rss_kb);
        floor_json_end();
    }
    free(payload);
    free(samples);
    return rc;
}
