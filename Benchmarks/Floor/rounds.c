/*
 * Sequential handoff rounds between one predecessor and one successor connection, shared by the latency
 * and large scenarios.
 *
 * Round i: predecessor PUBLISH (QoS 1, retain, `size` bytes) on <prefix>/<kind>/<i>; the successor,
 * subscribed to <prefix>/<kind>/# at QoS 1, receives it and PUBLISHes the zero-length retained QoS 1
 * clear on the same topic; the broker delivers that clear back to the successor. A round's time runs
 * from just before the predecessor's publish call to the successor's callback for the clear.
 */
#include "floor.h"

#include <stdio.h>
#include <string.h>

static void successor_message(floor_client *c, const struct mosquitto_message *msg,
                              const mosquitto_property *props, uint64_t now_ns)
{
    (void)props;
    floor_rounds *r = c->scenario;
    if (msg->payloadlen > 0) {
        if (msg->payloadlen != r->size) {
            floor_fail(c->run, "%s: %s carried %d bytes, expected %ld", r->scenario, msg->topic, msg->payloadlen, r->size);
            return;
        }
        floor_client_publish(c, msg->topic, 0, NULL, NULL); /* the clear */
        return;
    }
    pthread_mutex_lock(&c->run->lock);
    if (!r->done && strcmp(msg->topic, r->topic) == 0) {
        r->done = true;
        r->done_ns = now_ns;
        pthread_cond_broadcast(&c->run->cond);
    } else {
        floor_fail_locked(c->run, "%s: unexpected clear on %s", r->scenario, msg->topic);
    }
    pthread_mutex_unlock(&c->run->lock);
}

static bool round_done(void *arg)
{
    return ((floor_rounds *)arg)->done;
}

int floor_rounds_open(floor_rounds *r, floor_run *run, const char *scenario, const char *kind, long size)
{
    char filter[1100];
    memset(r, 0, sizeof(*r));
    r->run = run;
    r->scenario = scenario;
    r->kind = kind;
    r->size = size;
    snprintf(filter, sizeof(filter), "%s/%s/#", run->opt->prefix, kind);
    if (floor_client_open(&r->pred, run, "pred", 0, NULL, NULL) != 0
        || floor_client_open(&r->succ, run, "succ", 0, successor_message, r) != 0
        || floor_client_subscribe(&r->succ, filter) != 0) {
        return 1;
    }
    return 0;
}

int floor_rounds_run(floor_rounds *r, const char *payload, long count, uint64_t *samples)
{
    floor_run *run = r->run;
    for (long i = 0; i < count; i++) {
        pthread_mutex_lock(&run->lock);
        snprintf(r->topic, sizeof(r->topic), "%s/%s/%ld", run->opt->prefix, r->kind, i);
        r->done = false;
        pthread_mutex_unlock(&run->lock);

        uint64_t t0 = floor_now_ns();
        if (floor_client_publish(&r->pred, r->topic, (int)r->size, payload, NULL) != 0
            || floor_wait(run, round_done, r, "the clear to come back") != 0) {
            return 1;
        }
        samples[i] = r->done_ns - t0;
    }
    return floor_client_wait_acked(&r->pred) != 0 || floor_client_wait_acked(&r->succ) != 0;
}

void floor_rounds_close(floor_rounds *r)
{
    floor_client_close(&r->succ);
    floor_client_close(&r->pred);
}
