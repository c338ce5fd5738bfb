/*
 * handoff-floor: run state, bounded waits and the libmosquitto client wrapper.
 */
#include "floor.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mqtt_protocol.h>

uint64_t floor_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void floor_log(const floor_options *opt, const char *fmt, ...)
{
    if (!opt->verbose) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "handoff-floor: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int floor_run_init(floor_run *run, const floor_options *opt)
{
    memset(run, 0, sizeof(*run));
    run->opt = opt;
    pthread_condattr_t attr;
    if (pthread_mutex_init(&run->lock, NULL) != 0 || pthread_condattr_init(&attr) != 0) {
        return -1;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&run->cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

void floor_run_destroy(floor_run *run)
{
    pthread_cond_destroy(&run->cond);
    pthread_mutex_destroy(&run->lock);
}

static void fail_locked_v(floor_run *run, const char *fmt, va_list ap)
{
    if (!run->failed) {
        run->failed = true;
        vsnprintf(run->error, sizeof(run->error), fmt, ap);
    }
    pthread_cond_broadcast(&run->cond);
}

void floor_fail_locked(floor_run *run, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_locked_v(run, fmt, ap);
    va_end(ap);
}

void floor_fail(floor_run *run, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&run->lock);
    fail_locked_v(run, fmt, ap);
    pthread_mutex_unlock(&run->lock);
    va_end(ap);
}

int floor_wait(floor_run *run, bool (*pred)(void *arg), void *arg, const char *what)
{
    uint64_t deadline_ns = floor_now_ns() + (uint64_t)(run->opt->timeout_s * 1e9);
    struct timespec deadline = {
        .tv_sec = (time_t)(deadline_ns / 1000000000u),
        .tv_nsec = (long)(deadline_ns % 1000000000u),
    };
    int rc = 0;
    pthread_mutex_lock(&run->lock);
    while (!run->failed && !pred(arg)) {
        int w = pthread_cond_timedwait(&run->cond, &run->lock, &deadline);
        if (w == ETIMEDOUT && !run->failed && !pred(arg)) {
            floor_fail_locked(run, "timed out after %.0f s waiting for %s", run->opt->timeout_s, what);
            break;
        }
    }
    if (run->failed) {
        rc = -1;
    }
    pthread_mutex_unlock(&run->lock);
    return rc;
}

/* ---- libmosquitto callbacks (run on the client's loop thread) ---- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
    (void)mosq;
    (void)flags;
    floor_client *c = obj;
    floor_run *run = c->run;
    if (run->opt->verbose) {
        uint16_t receive_max = 0;
        bool has = mosquitto_property_read_int16(props, MQTT_PROP_RECEIVE_MAXIMUM, &receive_max, false) != NULL;
        floor_log(run->opt, "%s: CONNACK rc=%d, broker receive-maximum %s%u", c->id, rc,
                  has ? "" : "(absent) ", (unsigned)receive_max);
    }
    pthread_mutex_lock(&run->lock);
    if (rc != 0) {
        floor_fail_locked(run, "%s: connection refused: %s", c->id, mosquitto_reason_string(rc));
    } else if (c->connected) {
        /* loop_start reconnected after a drop: in-flight state is unreliable, give up. */
        floor_fail_locked(run, "%s: unexpected reconnect", c->id);
    } else {
        c->connected = true;
        pthread_cond_broadcast(&run->cond);
    }
    pthread_mutex_unlock(&run->lock);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
    (void)mosq;
    (void)props;
    floor_client *c = obj;
    floor_run *run = c->run;
    pthread_mutex_lock(&run->lock);
    if (!c->closing) {
        floor_fail_locked(run, "%s: unexpected disconnect (rc %d: %s)", c->id, rc,
                          rc > 0 && rc < 128 ? mosquitto_strerror(rc) : mosquitto_reason_string(rc));
    }
    pthread_mutex_unlock(&run->lock);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count, const int *granted_qos,
                         const mosquitto_property *props)
{
    (void)mosq;
    (void)mid;
    (void)props;
    floor_client *c = obj;
    floor_run *run = c->run;
    pthread_mutex_lock(&run->lock);
    for (int i = 0; i < qos_count; i++) {
        if (granted_qos[i] != 1) {
            floor_fail_locked(run, "%s: subscription granted 0x%02x, wanted QoS 1", c->id, granted_qos[i]);
        }
    }
    c->suback_pending--;
    pthread_cond_broadcast(&run->cond);
    pthread_mutex_unlock(&run->lock);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason_code, const mosquitto_property *props)
{
    (void)mosq;
    (void)props;
    uint64_t now = floor_now_ns();
    floor_client *c = obj;
    floor_run *run = c->run;
    pthread_mutex_lock(&run->lock);
    if (reason_code >= 128) {
        floor_fail_locked(run, "%s: PUBACK for mid %d: %s", c->id, mid, mosquitto_reason_string(reason_code));
    }
    c->acked++;
    c->last_ack_ns = now;
    if (c->acked >= c->published) {
        pthread_cond_broadcast(&run->cond);
    }
    pthread_mutex_unlock(&run->lock);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    (void)mosq;
    uint64_t now = floor_now_ns();
    floor_client *c = obj;
    if (c->on_message != NULL) {
        c->on_message(c, msg, props, now);
    }
}

/* ---- client operations ---- */

static bool client_connected(void *arg)
{
    floor_client *c = arg;
    return c->connected;
}

static bool client_subscribed(void *arg)
{
    floor_client *c = arg;
    return c->suback_pending == 0;
}

static bool client_acked(void *arg)
{
    floor_client *c = arg;
    return c->acked >= c->published;
}

int floor_client_open(floor_client *c, floor_run *run, const char *role, int index,
                      floor_message_fn on_message_fn, void *scenario)
{
    const floor_options *opt = run->opt;
    memset(c, 0, sizeof(*c));
    c->run = run;
    c->index = index;
    c->on_message = on_message_fn;
    c->scenario = scenario;
    snprintf(c->id, sizeof(c->id), "floor-%ld-%s-%d", (long)getpid(), role, index);

    c->mosq = mosquitto_new(c->id, true, c);
    if (c->mosq == NULL) {
        floor_fail(run, "%s: mosquitto_new: %s", c->id, strerror(errno));
        return -1;
    }
    int rc;
    if ((rc = mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5)) != MOSQ_ERR_SUCCESS
        || (rc = mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1)) != MOSQ_ERR_SUCCESS
        || (rc = mosquitto_int_option(c->mosq, MOSQ_OPT_SEND_MAXIMUM, opt->inflight)) != MOSQ_ERR_SUCCESS
        || (rc = mosquitto_int_option(c->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, opt->inflight)) != MOSQ_ERR_SUCCESS) {
        floor_fail(run, "%s: mosquitto_int_option: %s", c->id, mosquitto_strerror(rc));
        return -1;
    }
    mosquitto_connect_v5_callback_set(c->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
    mosquitto_subscribe_v5_callback_set(c->mosq, on_subscribe);
    mosquitto_publish_v5_callback_set(c->mosq, on_publish);
    mosquitto_message_v5_callback_set(c->mosq, on_message);

    rc = mosquitto_connect(c->mosq, opt->host, opt->port, 60);
    if (rc != MOSQ_ERR_SUCCESS) {
        floor_fail(run, "%s: connect to %s:%d: %s", c->id, opt->host, opt->port,
                   rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        return -1;
    }
    rc = mosquitto_loop_start(c->mosq);
    if (rc != MOSQ_ERR_SUCCESS) {
        floor_fail(run, "%s: loop_start: %s", c->id, mosquitto_strerror(rc));
        return -1;
    }
    return floor_wait(run, client_connected, c, "CONNACK");
}

int floor_client_subscribe_async(floor_client *c, const char *filter)
{
    pthread_mutex_lock(&c->run->lock);
    c->suback_pending++;
    pthread_mutex_unlock(&c->run->lock);
    int rc = mosquitto_subscribe_v5(c->mosq, NULL, filter, 1, 0, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        floor_fail(c->run, "%s: subscribe %s: %s", c->id, filter, mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

int floor_client_subscribe(floor_client *c, const char *filter)
{
    if (floor_client_subscribe_async(c, filter) != 0) {
        return -1;
    }
    return floor_wait(c->run, client_subscribed, c, "SUBACK");
}

int floor_client_publish(floor_client *c, const char *topic, int len, const void *payload,
                         const mosquitto_property *props)
{
    pthread_mutex_lock(&c->run->lock);
    c->published++;
    pthread_mutex_unlock(&c->run->lock);
    int rc = mosquitto_publish_v5(c->mosq, NULL, topic, len, payload, 1, true, props);
    if (rc != MOSQ_ERR_SUCCESS) {
        floor_fail(c->run, "%s: publish %s: %s", c->id, topic, mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

int floor_client_wait_acked(floor_client *c)
{
    return floor_wait(c->run, client_acked, c, "PUBACKs");
}

void floor_client_close(floor_client *c)
{
    if (c->mosq == NULL) {
        return;
    }
    pthread_mutex_lock(&c->run->lock);
    c->closing = true;
    pthread_mutex_unlock(&c->run->lock);
    mosquitto_disconnect_v5(c->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
    /* loop_stop(false) has hung when the loop thread was stuck reconnecting: bound it.
     * A thread that was never started is reported as MOSQ_ERR_INVAL: harmless. */
    unsigned previous = alarm((unsigned)c->run->opt->timeout_s);
    mosquitto_loop_stop(c->mosq, false);
    alarm(previous);
    mosquitto_destroy(c->mosq);
    c->mosq = NULL;
}

/* ---- helpers ---- */

long floor_topic_index(const char *topic, const char *prefix_kind, size_t prefix_kind_len, long limit)
{
    if (strncmp(topic, prefix_kind, prefix_kind_len) != 0) {
        return -1;
    }
    const char *digits = topic + prefix_kind_len;
    if (*digits < '0' || *digits > '9') {
        return -1;
    }
    char *end = NULL;
    long i = strtol(digits, &end, 10);
    if (*end != '\0' || i < 0 || i >= limit) {
        return -1;
    }
    return i;
}
