/*
 * bulk: `count` retained handoffs published back to back, then claimed by one successor.
 *
 * Phase 1: the predecessor PUBLISHes (QoS 1, retain, `size` bytes) on <prefix>/b/0..count-1
 * without waiting in between (in flight at once up to --inflight); ack_ms runs from just
 * before the first publish call to the last PUBACK.
 * Phase 2: a successor connects, SUBSCRIBEs to <prefix>/b/# at QoS 1, receives the `count`
 * retained messages and for each PUBLISHes the zero-length retained QoS 1 clear; the broker
 * delivers every clear back. claim_ms runs from just before the subscribe call to the last
 * clear delivered.
 */
#include "floor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bulk_state {
    long count;
    long size;
    char prefix_kind[1100]; /* "<prefix>/b/" */
    size_t prefix_kind_len;
    uint8_t *cleared; /* per topic; touched by the successor's loop thread only */
    /* guarded by run->lock */
    long retained_seen;
    long cleared_count;
    uint64_t done_ns;
} bulk_state;

static void successor_message(floor_client *c, const struct mosquitto_message *msg,
                              const mosquitto_property *props, uint64_t now_ns)
{
    (void)props;
    bulk_state *st = c->scenario;
    long idx = floor_topic_index(msg->topic, st->prefix_kind, st->prefix_kind_len, st->count);
    if (idx < 0) {
        floor_fail(c->run, "bulk: unexpected topic %s", msg->topic);
        return;
    }
    if (msg->payloadlen > 0) {
        if (msg->payloadlen != st->size || !msg->retain) {
            floor_fail(c->run, "bulk: %s: %d bytes, retain %d; expected a retained %ld-byte handoff", msg->topic,
                       msg->payloadlen, (int)msg->retain, st->size);
            return;
        }
        pthread_mutex_lock(&c->run->lock);
        st->retained_seen++;
        pthread_mutex_unlock(&c->run->lock);
        floor_client_publish(c, msg->topic, 0, NULL, NULL); /* the clear */
        return;
    }
    if (st->cleared[idx]) {
        floor_fail(c->run, "bulk: second clear on %s", msg->topic);
        return;
    }
    st->cleared[idx] = 1;
    pthread_mutex_lock(&c->run->lock);
    if (++st->cleared_count == st->count) {
        st->done_ns = now_ns;
        pthread_cond_broadcast(&c->run->cond);
    }
    pthread_mutex_unlock(&c->run->lock);
}

static bool all_cleared(void *arg)
{
    bulk_state *st = arg;
    return st->cleared_count == st->count;
}

int floor_scenario_bulk(floor_run *run)
{
    const floor_options *opt = run->opt;
    long count = opt->count > 0 ? opt->count : 10000;
    long size = opt->size > 0 ? opt->size : 1024;
    bulk_state st = {.count = count, .size = size};
    floor_client pred = {0}, succ = {0};
    char *payload = malloc((size_t)size);
    char topic[1100], filter[1100];
    uint64_t t_first = 0, t_called = 0, t_sub = 0;
    int rc = 1;

    if (count > 65000) {
        /* message ids are 16 bits and libmosquitto assigns them at publish time */
        floor_fail(run, "bulk: --count must be at most 65000");
        goto out;
    }
    st.cleared = calloc((size_t)count, 1);
    if (payload == NULL || st.cleared == NULL) {
        floor_fail(run, "out of memory");
        goto out;
    }
    memset(payload, 'b', (size_t)size);
    snprintf(st.prefix_kind, sizeof(st.prefix_kind), "%s/b/", opt->prefix);
    st.prefix_kind_len = strlen(st.prefix_kind);
    snprintf(filter, sizeof(filter), "%s/b/#", opt->prefix);

    if (floor_client_open(&pred, run, "pred", 0, NULL, NULL) != 0) {
        goto out;
    }
    floor_log(opt, "bulk: publishing %ld x %ld bytes", count, size);
    t_first = floor_now_ns();
    for (long i = 0; i < count; i++) {
        snprintf(topic, sizeof(topic), "%s%ld", st.prefix_kind, i);
        if (floor_client_publish(&pred, topic, (int)size, payload, NULL) != 0) {
            goto out;
        }
    }
    t_called = floor_now_ns();
    if (floor_client_wait_acked(&pred) != 0) {
        goto out;
    }

    floor_log(opt, "bulk: claiming");
    if (floor_client_open(&succ, run, "succ", 0, successor_message, &st) != 0) {
        goto out;
    }
    t_sub = floor_now_ns();
    if (floor_client_subscribe(&succ, filter) != 0 || floor_wait(run, all_cleared, &st, "every clear") != 0
        || floor_client_wait_acked(&succ) != 0) {
        goto out;
    }
    rc = 0;

out:
    floor_client_close(&succ);
    floor_client_close(&pred);
    if (rc == 0 && !run->failed) {
        double ack_ms = floor_ms(pred.last_ack_ns - t_first);
        double claim_ms = floor_ms(st.done_ns - t_sub);
        floor_json_begin(opt, "bulk", count, size);
        floor_json_ms("ack_ms", ack_ms);
        floor_json_ms("publish_calls_ms", floor_ms(t_called - t_first));
        floor_json_num("acks_per_second", (double)count / (ack_ms / 1e3));
        floor_json_ms("claim_ms", claim_ms);
        floor_json_num("claims_per_second", (double)count / (claim_ms / 1e3));
        floor_json_end();
    }
    free(st.cleared);
    free(payload);
    return rc;
}
