/*
 * latency: sequential handoff rounds between one predecessor and one successor connection.
 *
 * Round i: predecessor PUBLISH (QoS 1, retain, `size` bytes) on <prefix>/h/<i>; the successor,
 * subscribed to <prefix>/h/# at QoS 1, receives it and PUBLISHes the zero-length retained
 * QoS 1 clear on the same topic; the broker delivers that clear back to the successor.
 * The round's time runs from just before the predecessor's publish call to the successor's
 * callback for the clear.
 */
#include "floor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int floor_scenario_latency(floor_run *run)
{
    const floor_options *opt = run->opt;
    long count = opt->count > 0 ? opt->count : 2000;
    long size = opt->size > 0 ? opt->size : 1024;
    floor_rounds rounds = {0};
    uint64_t *samples = calloc((size_t)count, sizeof(uint64_t));
    char *payload = malloc((size_t)size);
    int rc = 1;

    if (samples == NULL || payload == NULL) {
        floor_fail(run, "out of memory");
        goto out;
    }
    memset(payload, 'h', (size_t)size);
    if (floor_rounds_open(&rounds, run, "latency", "h", size) != 0) {
        goto out;
    }
    floor_log(opt, "latency: %ld rounds of %ld bytes", count, size);
    if (floor_rounds_run(&rounds, payload, count, samples) != 0) {
        goto out;
    }
    rc = 0;

out:
    floor_rounds_close(&rounds);
    if (rc == 0 && !run->failed) {
        floor_stats s;
        floor_stats_compute(samples, (size_t)count, &s);
        floor_json_begin(opt, "latency", count, size);
        floor_json_stats("", &s);
        floor_json_end();
    }
    free(payload);
    free(samples);
    return rc;
}
