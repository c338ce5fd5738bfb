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

typedef struct large_state {
    long size;
    /* guarded by run->lock */
    char topic[1100];
    bool done;
    uint64_t done_ns;
} large_state;

static void successor_message(floor_client *c, const struct mosquitto_message *msg,
                              const mosquitto_property *props, uint64_t now_ns)
{
    (void)props;
    large_state *st = c->scenario;
    if (msg->payloadlen > 0) {
        if (msg->payloadlen != st->size) {
            floor_fail(c->run, "large: %s carried %d bytes, expected %ld", msg->topic, msg->payloadlen, st->size);
            return;
        }
        floor_client_publish(c, msg->topic, 0, NULL, NULL); /* the clear */
        return;
    }
    pthread_mutex_lock(&c->run->lock);
    if (!st->done && strcmp(msg->topic, st->topic) == 0) {
        st->done = true;
        st->done_ns = now_ns;
        pthread_cond_broadcast(&c->run->cond);
    } else {
        floor_fail_locked(c->run, "large: unexpected clear on %s", msg->topic);
    }
    pthread_mutex_unlock(&c->run->lock);
}

static bool round_done(void *arg)
{
    return ((large_state *)arg)->done;
}

int floor_scenario_large(floor_run *run)
{
    const floor_options *opt = run->opt;
    long count = opt->count > 0 ? opt->count : 3;
    long size = opt->size > 0 ? opt->size : 16777216;
    large_state st = {.size = size};
    floor_client pred = {0}, succ = {0};
    uint64_t *samples = calloc((size_t)count, sizeof(uint64_t));
    char *payload = NULL;
    char filter[1100];
    long baseline_rss_kb = -1;
    int rc = 1;

    if (samples == NULL) {
        floor_fail(run, "out of memory");
        goto out;
    }
    snprintf(filter, sizeof(filter), "%s/l/#", opt->prefix);
    if (floor_client_open(&pred, run, "pred", 0, NULL, NULL) != 0
        || floor_client_open(&succ, run, "succ", 0, successor_message, &st) != 0
        || floor_client_subscribe(&succ, filter) != 0) {
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

    for (long i = 0; i < count; i++) {
        pthread_mutex_lock(&run->lock);
        snprintf(st.topic, sizeof(st.topic), "%s/l/%ld", opt->prefix, i);
        st.done = false;
        pthread_mutex_unlock(&run->lock);

        uint64_t t0 = floor_now_ns();
        if (floor_client_publish(&pred, st.topic, (int)size, payload, NULL) != 0
            || floor_wait(run, round_done, &st, "the clear to come back") != 0) {
            goto out;
        }
        samples[i] = st.done_ns - t0;
    }
    if (floor_client_wait_acked(&pred) != 0 || floor_client_wait_acked(&succ) != 0) {
        goto out;
    }
    rc = 0;

out:
    floor_client_close(&succ);
    floor_client_close(&pred);
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
