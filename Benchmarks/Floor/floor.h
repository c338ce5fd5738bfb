/*
 * handoff-floor: the cost floor for swift-handoff, written directly against
 * libmosquitto's C API. Shared declarations.
 */
#ifndef HANDOFF_FLOOR_H
#define HANDOFF_FLOOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto.h>

/* Command-line options. */
typedef struct floor_options {
    const char *host;
    int port;
    const char *scenario;
    const char *prefix;
    long count;        /* -1: scenario default */
    long size;         /* -1: scenario default */
    int successors;    /* contention only */
    double timeout_s;  /* bound on every single wait */
    int inflight;      /* MOSQ_OPT_SEND_MAXIMUM and MOSQ_OPT_RECEIVE_MAXIMUM */
    long pace_us;      /* contention: pause between second-half publishes */
    bool verbose;
} floor_options;

/* State shared by all clients of one run; every field below `lock` is guarded by it. */
typedef struct floor_run {
    const floor_options *opt;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast on every state change the main thread may wait for */
    bool failed;
    char error[512];
} floor_run;

typedef struct floor_client floor_client;

/* Called on the client's loop thread for every delivered message, outside the run lock.
 * `now_ns` is taken on entry to the library callback. The message is freed on return. */
typedef void (*floor_message_fn)(floor_client *client, const struct mosquitto_message *msg,
                                 const mosquitto_property *props, uint64_t now_ns);

/* One MQTT connection. Passed to libmosquitto as the userdata pointer. */
struct floor_client {
    struct mosquitto *mosq;
    floor_run *run;
    int index;
    char id[96];
    floor_message_fn on_message;
    void *scenario; /* scenario state this client's callbacks work on */

    /* guarded by run->lock */
    bool connected;
    bool closing;   /* a disconnect from now on is expected */
    int suback_pending;
    long published; /* QoS 1 publishes handed to libmosquitto */
    long acked;     /* PUBACKs received */
    uint64_t last_ack_ns;
};

/* Time. */
uint64_t floor_now_ns(void);
static inline double floor_ms(uint64_t ns) { return (double)ns / 1e6; }

/* Run. */
int floor_run_init(floor_run *run, const floor_options *opt);
void floor_run_destroy(floor_run *run);
/* Marks the run failed (first message wins) and wakes waiters. Takes the lock. */
void floor_fail(floor_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with run->lock already held. */
void floor_fail_locked(floor_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Waits, holding nothing on entry, until pred(arg) is true (evaluated under run->lock).
 * Returns 0, or -1 after a timeout (opt->timeout_s) or a failure, with run->error set. */
int floor_wait(floor_run *run, bool (*pred)(void *arg), void *arg, const char *what);

/* Clients. */
int floor_client_open(floor_client *c, floor_run *run, const char *role, int index,
                      floor_message_fn on_message, void *scenario);
/* Subscribes at QoS 1 without waiting for the SUBACK. */
int floor_client_subscribe_async(floor_client *c, const char *filter);
/* Subscribes at QoS 1 and waits for the SUBACK. */
int floor_client_subscribe(floor_client *c, const char *filter);
/* Publishes a retained QoS 1 message (counted for floor_client_wait_acked). Safe from callbacks. */
int floor_client_publish(floor_client *c, const char *topic, int len, const void *payload,
                         const mosquitto_property *props);
/* Waits until every publish of this client has its PUBACK. */
int floor_client_wait_acked(floor_client *c);
/* Disconnects, stops the loop thread, destroys. Safe to call on a client that failed to open. */
void floor_client_close(floor_client *c);

/* Statistics over a sample of durations in nanoseconds (sorted in place). */
typedef struct floor_stats {
    double p50, p90, p99, max, min, mean; /* milliseconds */
} floor_stats;
void floor_stats_compute(uint64_t *samples, size_t n, floor_stats *out);

/* Index in `topic` after "<prefix>/<kind>/", or -1 if it does not parse or is >= limit. */
long floor_topic_index(const char *topic, const char *prefix_kind, size_t prefix_kind_len, long limit);

/* Peak resident set size of this process, in kilobytes. */
long floor_peak_rss_kb(void);

/* Scenarios: each prints one JSON object on stdout and returns the process exit code. */
/* Sequential handoff rounds (rounds.c), shared by the latency and large scenarios. */
typedef struct floor_rounds {
    floor_run *run;
    const char *scenario;
    const char *kind; /* the topic level after the prefix */
    long size;
    floor_client pred, succ;
    /* guarded by run->lock */
    char topic[1100]; /* the current round's topic */
    bool done;
    uint64_t done_ns;
} floor_rounds;

/* Opens the predecessor and the subscribed successor. */
int floor_rounds_open(floor_rounds *r, floor_run *run, const char *scenario, const char *kind, long size);
/* Runs `count` rounds of `payload` (r->size bytes), storing each round's time in samples. */
int floor_rounds_run(floor_rounds *r, const char *payload, long count, uint64_t *samples);
void floor_rounds_close(floor_rounds *r);

int floor_scenario_latency(floor_run *run);
int floor_scenario_bulk(floor_run *run);
int floor_scenario_large(floor_run *run);
int floor_scenario_contention(floor_run *run);

/* Verbose diagnostics on stderr. */
void floor_log(const floor_options *opt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* JSON helpers: print `"key": value` pairs. */
void floor_json_begin(const floor_options *opt, const char *scenario, long count, long size);
void floor_json_ms(const char *key, double ms);
void floor_json_num(const char *key, double value);
void floor_json_int(const char *key, long value);
void floor_json_bool(const char *key, bool value);
void floor_json_ms_array(const char *key, const uint64_t *ns, size_t n);
void floor_json_stats(const char *prefix, const floor_stats *s);
void floor_json_end(void);

#endif
