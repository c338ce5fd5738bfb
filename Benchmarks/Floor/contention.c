/*
 * contention: `successors` claimers race for every handoff.
 *
 * The predecessor PUBLISHes (QoS 1, retain, `size` bytes) the first half of <prefix>/c/0..count-1
 * and waits for the PUBACKs; then every successor connects and all SUBSCRIBE to <prefix>/c/#
 * (QoS 1) back to back, so each receives the retained first half; then the predecessor publishes
 * the second half live, --pace-us apart. Every successor, on a non-empty message on a topic it
 * has not seen cleared, PUBLISHes the zero-length retained QoS 1 clear with the MQTT 5 user
 * property claim-by=<successor index>. Every clear is delivered to every subscribed successor;
 * each records the first clear it sees per topic: the verdict, naming the winner.
 *
 * resolution: per (successor, handoff) pair, handoff delivered -> first clear delivered.
 * Agreement: for every topic, all successors that saw a clear name the same winner; `lost`
 * counts topics nobody saw claimed.
 */
#include "floor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mqtt_protocol.h>

typedef struct contention_state contention_state;

/* One successor's records; written only by its own loop thread, read by main after it stopped. */
typedef struct successor_data {
    contention_state *state;
    uint64_t *recv_ns;    /* handoff delivered; 0 = never */
    uint64_t *verdict_ns; /* first clear delivered; 0 = never */
    int *winner;          /* claim-by of the first clear; -1 = none */
    uint8_t *claimed;     /* this successor published a clear */
    uint8_t *echoed;      /* ... and saw it come back */
    long late_handoffs;   /* handoffs delivered after a clear on the same topic */
    mosquitto_property *props; /* claim-by=<index> */
} successor_data;

struct contention_state {
    long count;
    long size;
    char prefix_kind[1100]; /* "<prefix>/c/" */
    size_t prefix_kind_len;
    successor_data *succ;
    /* guarded by run->lock */
    uint8_t *topic_received;
    long topics_received;  /* topics delivered to at least one successor */
    long expected_topics;  /* topics_received wanted by wait_settled */
    long claims;           /* clears published */
    long outstanding_echo; /* clears published whose publisher has not seen them back */
    long delivered;        /* messages delivered to all successors */
    uint64_t last_delivery_ns;
};

static int read_claim_by(const mosquitto_property *props)
{
    char *name = NULL, *value = NULL;
    int who = -1;
    const mosquitto_property *p = mosquitto_property_read_string_pair(props, MQTT_PROP_USER_PROPERTY, &name, &value, false);
    while (p != NULL) {
        bool match = strcmp(name, "claim-by") == 0;
        if (match) {
            who = atoi(value);
        }
        free(name);
        free(value);
        name = value = NULL;
        if (match) {
            break;
        }
        p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, true);
    }
    return who;
}

static void successor_message(floor_client *c, const struct mosquitto_message *msg,
                              const mosquitto_property *props, uint64_t now_ns)
{
    successor_data *sd = c->scenario;
    contention_state *st = sd->state;
    floor_run *run = c->run;
    long idx = floor_topic_index(msg->topic, st->prefix_kind, st->prefix_kind_len, st->count);
    if (idx < 0) {
        floor_fail(run, "contention: unexpected topic %s", msg->topic);
        return;
    }

    if (msg->payloadlen > 0) {
        if (msg->payloadlen != st->size) {
            floor_fail(run, "contention: %s carried %d bytes, expected %ld", msg->topic, msg->payloadlen, st->size);
            return;
        }
        bool claim = sd->verdict_ns[idx] == 0 && sd->recv_ns[idx] == 0;
        if (sd->verdict_ns[idx] != 0) {
            sd->late_handoffs++;
        }
        if (sd->recv_ns[idx] == 0) {
            sd->recv_ns[idx] = now_ns;
        }
        pthread_mutex_lock(&run->lock);
        st->delivered++;
        st->last_delivery_ns = now_ns;
        if (!st->topic_received[idx]) {
            st->topic_received[idx] = 1;
            st->topics_received++;
        }
        if (claim) {
            st->claims++;
            st->outstanding_echo++;
        }
        pthread_mutex_unlock(&run->lock);
        if (claim) {
            sd->claimed[idx] = 1;
            floor_client_publish(c, msg->topic, 0, NULL, sd->props);
        }
        return;
    }

    int who = read_claim_by(props);
    if (who < 0) {
        floor_fail(run, "contention: clear on %s without claim-by", msg->topic);
        return;
    }
    if (sd->winner[idx] < 0) {
        sd->winner[idx] = who;
        sd->verdict_ns[idx] = now_ns;
    }
    bool own_echo = who == c->index && sd->claimed[idx] && !sd->echoed[idx];
    if (own_echo) {
        sd->echoed[idx] = 1;
    }
    pthread_mutex_lock(&run->lock);
    st->delivered++;
    st->last_delivery_ns = now_ns;
    if (own_echo && --st->outstanding_echo == 0) {
        pthread_cond_broadcast(&run->cond);
    }
    pthread_mutex_unlock(&run->lock);
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static bool settled(void *arg)
{
    contention_state *st = arg;
    return st->topics_received == st->expected_topics && st->outstanding_echo == 0;
}

/* Waits until every successor has seen its own clears come back for the first
 * `expected_topics` handoffs; other successors' clears may still be on their way, so then
 * waits for 250 ms without any delivery. Returns the time the claims came back. */
static int wait_settled(floor_run *run, contention_state *st, long expected_topics, uint64_t *settled_ns)
{
    pthread_mutex_lock(&run->lock);
    st->expected_topics = expected_topics;
    pthread_mutex_unlock(&run->lock);
    if (floor_wait(run, settled, st, "every claim to come back") != 0) {
        return -1;
    }
    *settled_ns = floor_now_ns();
    for (;;) {
        pthread_mutex_lock(&run->lock);
        uint64_t now = floor_now_ns();
        uint64_t quiet_ns = now - st->last_delivery_ns;
        bool failed = run->failed;
        pthread_mutex_unlock(&run->lock);
        if (failed) {
            return -1;
        }
        if (quiet_ns >= 250000000u) {
            return 0;
        }
        if (now - *settled_ns > (uint64_t)(run->opt->timeout_s * 1e9)) {
            floor_fail(run, "contention: deliveries did not stop within %.0f s", run->opt->timeout_s);
            return -1;
        }
        sleep_us(20000);
    }
}

static bool all_subscribed(void *arg)
{
    floor_client **clients = arg;
    for (floor_client **c = clients; *c != NULL; c++) {
        if ((*c)->suback_pending != 0) {
            return false;
        }
    }
    return true;
}

int floor_scenario_contention(floor_run *run)
{
    const floor_options *opt = run->opt;
    long count = opt->count > 0 ? opt->count : 1000;
    long size = opt->size > 0 ? opt->size : 1024;
    int n = opt->successors;
    long first_half = count / 2;
    contention_state st = {.count = count, .size = size};
    floor_client pred = {0};
    floor_client *succ = calloc((size_t)n, sizeof(floor_client));
    floor_client **succ_list = calloc((size_t)n + 1, sizeof(floor_client *));
    st.succ = calloc((size_t)n, sizeof(successor_data));
    st.topic_received = calloc((size_t)count, 1);
    char *payload = malloc((size_t)size);
    uint64_t *resolution = calloc((size_t)n * (size_t)count, sizeof(uint64_t));
    uint64_t *resolution_retained = calloc((size_t)n * (size_t)count, sizeof(uint64_t));
    uint64_t *resolution_live = calloc((size_t)n * (size_t)count, sizeof(uint64_t));
    char topic[1100], filter[1100];
    uint64_t t_sub = 0, t_retained_settled = 0, t_live = 0, t_live_settled = 0;
    int rc = 1;

    if (succ == NULL || succ_list == NULL || st.succ == NULL || st.topic_received == NULL || payload == NULL
        || resolution == NULL || resolution_retained == NULL || resolution_live == NULL) {
        floor_fail(run, "out of memory");
        goto out;
    }
    for (int s = 0; s < n; s++) {
        successor_data *sd = &st.succ[s];
        sd->state = &st;
        sd->recv_ns = calloc((size_t)count, sizeof(uint64_t));
        sd->verdict_ns = calloc((size_t)count, sizeof(uint64_t));
        sd->winner = malloc((size_t)count * sizeof(int));
        sd->claimed = calloc((size_t)count, 1);
        sd->echoed = calloc((size_t)count, 1);
        char index[16];
        snprintf(index, sizeof(index), "%d", s);
        if (sd->recv_ns == NULL || sd->verdict_ns == NULL || sd->winner == NULL || sd->claimed == NULL
            || sd->echoed == NULL
            || mosquitto_property_add_string_pair(&sd->props, MQTT_PROP_USER_PROPERTY, "claim-by", index)
                   != MOSQ_ERR_SUCCESS) {
            floor_fail(run, "out of memory");
            goto out;
        }
        for (long i = 0; i < count; i++) {
            sd->winner[i] = -1;
        }
        succ_list[s] = &succ[s];
    }
    memset(payload, 'c', (size_t)size);
    snprintf(st.prefix_kind, sizeof(st.prefix_kind), "%s/c/", opt->prefix);
    st.prefix_kind_len = strlen(st.prefix_kind);
    snprintf(filter, sizeof(filter), "%s/c/#", opt->prefix);

    /* First half: retained before anyone listens. */
    if (floor_client_open(&pred, run, "pred", 0, NULL, NULL) != 0) {
        goto out;
    }
    for (long i = 0; i < first_half; i++) {
        snprintf(topic, sizeof(topic), "%s%ld", st.prefix_kind, i);
        if (floor_client_publish(&pred, topic, (int)size, payload, NULL) != 0) {
            goto out;
        }
    }
    if (floor_client_wait_acked(&pred) != 0) {
        goto out;
    }

    /* Successors: connect all, then subscribe all back to back so they race for the first half. */
    for (int s = 0; s < n; s++) {
        if (floor_client_open(&succ[s], run, "succ", s, successor_message, &st.succ[s]) != 0) {
            goto out;
        }
    }
    t_sub = floor_now_ns();
    for (int s = 0; s < n; s++) {
        if (floor_client_subscribe_async(&succ[s], filter) != 0) {
            goto out;
        }
    }
    if (floor_wait(run, all_subscribed, succ_list, "every SUBACK") != 0) {
        goto out;
    }
    floor_log(opt, "contention: %d successors subscribed", n);
    /* Let the retained half resolve completely, so live handoffs do not queue behind it. */
    if (wait_settled(run, &st, first_half, &t_retained_settled) != 0) {
        goto out;
    }
    floor_log(opt, "contention: retained half resolved; publishing the second half");

    /* Second half: live, paced. */
    t_live = floor_now_ns();
    for (long i = first_half; i < count; i++) {
        snprintf(topic, sizeof(topic), "%s%ld", st.prefix_kind, i);
        if (floor_client_publish(&pred, topic, (int)size, payload, NULL) != 0) {
            goto out;
        }
        if (opt->pace_us > 0) {
            sleep_us(opt->pace_us);
        }
    }
    if (floor_client_wait_acked(&pred) != 0 || wait_settled(run, &st, count, &t_live_settled) != 0) {
        goto out;
    }
    for (int s = 0; s < n; s++) {
        if (floor_client_wait_acked(&succ[s]) != 0) {
            goto out;
        }
    }
    rc = 0;

out:
    if (succ != NULL) {
        for (int s = 0; s < n; s++) {
            floor_client_close(&succ[s]);
        }
    }
    floor_client_close(&pred);

    if (rc == 0 && !run->failed) {
        size_t pairs = 0, pairs_retained = 0, pairs_live = 0;
        long lost = 0, disagreements = 0, late = 0, bystanders = 0, bystander_mismatches = 0;
        for (int s = 0; s < n; s++) {
            late += st.succ[s].late_handoffs;
        }
        for (long i = 0; i < count; i++) {
            /* Contenders: successors the handoff was delivered to. They were subscribed before
             * any clear on the topic, so they see every clear, in the broker's order. */
            int winner = -1;
            bool disagree = false;
            for (int s = 0; s < n; s++) {
                successor_data *sd = &st.succ[s];
                if (sd->recv_ns[i] == 0) {
                    continue;
                }
                if (sd->verdict_ns[i] != 0) {
                    uint64_t r = sd->verdict_ns[i] - sd->recv_ns[i];
                    resolution[pairs++] = r;
                    if (i < first_half) {
                        resolution_retained[pairs_retained++] = r;
                    } else {
                        resolution_live[pairs_live++] = r;
                    }
                }
                if (sd->winner[i] >= 0) {
                    if (winner < 0) {
                        winner = sd->winner[i];
                    } else if (sd->winner[i] != winner) {
                        disagree = true;
                    }
                }
            }
            /* Bystanders: successors whose subscription reached the broker after the retained
             * message was cleared. They get no handoff, and only the clears published after
             * they subscribed: their "first clear" may name someone else. Reported, not judged. */
            for (int s = 0; s < n; s++) {
                successor_data *sd = &st.succ[s];
                if (sd->recv_ns[i] == 0 && sd->winner[i] >= 0) {
                    bystanders++;
                    if (sd->winner[i] != winner) {
                        bystander_mismatches++;
                    }
                }
            }
            if (winner < 0) {
                lost++;
            }
            if (disagree) {
                disagreements++;
            }
            if ((disagree || winner < 0) && opt->verbose) {
                fprintf(stderr, "handoff-floor: contention: topic %ld:", i);
                for (int s = 0; s < n; s++) {
                    fprintf(stderr, " s%d(%s winner %d)", s, st.succ[s].recv_ns[i] != 0 ? "received" : "bystander",
                            st.succ[s].winner[i]);
                }
                fputc('\n', stderr);
            }
        }
        floor_stats s;
        floor_stats_compute(resolution, pairs, &s);
        floor_json_begin(opt, "contention", count, size);
        floor_json_int("successors", n);
        floor_json_int("pace_us", opt->pace_us);
        floor_json_stats("resolution_", &s);
        floor_json_int("pairs", (long)pairs);
        /* the same, split: first half (retained, delivered on subscribe) and second half (live) */
        floor_stats sr, sl;
        floor_stats_compute(resolution_retained, pairs_retained, &sr);
        floor_stats_compute(resolution_live, pairs_live, &sl);
        floor_json_stats("retained_resolution_", &sr);
        floor_json_stats("live_resolution_", &sl);
        floor_json_num("messages_per_handoff", (double)st.delivered / (double)count);
        floor_json_num("claims_per_handoff", (double)st.claims / (double)count);
        floor_json_ms("retained_phase_ms", floor_ms(t_retained_settled - t_sub));
        floor_json_ms("live_phase_ms", floor_ms(t_live_settled - t_live));
        floor_json_bool("agreement", disagreements == 0);
        floor_json_int("disagreements", disagreements);
        floor_json_int("lost", lost);
        floor_json_int("late_handoffs", late);
        floor_json_int("bystanders", bystanders);
        floor_json_int("bystander_mismatches", bystander_mismatches);
        floor_json_end();
        if (disagreements != 0 || lost != 0) {
            fprintf(stderr, "handoff-floor: contention: %ld topics with disagreeing winners, %ld lost\n",
                    disagreements, lost);
            rc = 3;
        }
    }

    if (st.succ != NULL) {
        for (int s = 0; s < n; s++) {
            successor_data *sd = &st.succ[s];
            free(sd->recv_ns);
            free(sd->verdict_ns);
            free(sd->winner);
            free(sd->claimed);
            free(sd->echoed);
            mosquitto_property_free_all(&sd->props);
        }
    }
    free(resolution);
    free(resolution_retained);
    free(resolution_live);
    free(payload);
    free(st.topic_received);
    free(st.succ);
    free(succ_list);
    free(succ);
    return rc;
}
