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

typedef struct latency_state {
    floor_run *run;
    long size;
    /* guarded by run->lock */
    char topic[1100]; /* the current round's topic */
    bool done;
    uint64_t done_ns;
} latency_state;

static void successor_message(floor_client *c, const struct mosquitto_message *msg,
                              const mosquitto_property *props, uint64_t now_ns)
{
    (void)props;
    latency_state *st = c->scenario;
    if (msg->payloadlen > 0) {
        if (msg->payloadlen != st->size) {
            floor_fail(c->run, "latency: %s carried %d bytes, expected %ld", msg->topic, msg->payloadlen, st->size);
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
        floor_fail_locked(c->run, "latency: unexpected clear on %s", msg->topic);
    }
    pthread_mutex_unlock(&c->run->lock);
}

static bool round_done(void *arg)
{
    return ((latency_state *)arg)->done;
}

int floor_scenario_latency(floor_run *run)
{
    const floor_options *opt = run->opt;
    long count = opt->count > 0 ? opt->count : 2000;
    long size = opt->size > 0 ? opt->size : 1024;
    latency_state st = {.run = run, .size = size};
    floor_client pred = {0}, succ = {0};
    uint64_t *samples = calloc((size_t)count, sizeof(uint64_t));
    char *payload = malloc((size_t)size);
    char filter[1100];
    int rc = 1;

    if (samples == NULL || payload == NULL) {
        floor_fail(run, "out of memory");
        goto out;
    }
    memset(payload, 'h', (size_t)size);
    snprintf(filter, sizeof(filter), "%s/h/#", opt->prefix);

    if (floor_client_open(&pred, run, "pred", 0, NULL, NULL) != 0
        || floor_client_open(&succ, run, "succ", 0, successor_message, &st) != 0
        || floor_client_subscribe(&succ, filter) != 0) {
        goto out;
    }
    floor_log(opt, "latency: %ld rounds of %ld bytes", count, size);

    for (long i = 0; i < count; i++) {
        pthread_mutex_lock(&run->lock);
        snprintf(st.topic, sizeof(st.topic), "%s/h/%ld", opt->prefix, i);
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
