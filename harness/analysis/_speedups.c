/* harness.analysis._speedups: the summary path's per-packet work in C.
 *
 * A line-by-line translation of the pure analysis, which stays the specification (every rule is
 * stated and explained there; change it there first): harness/analysis/tracker.py's
 * ConversationTracker (with its timer queue), harness/analysis/zeek.py's ZeekState (itself a
 * translation of Zeek's TCP and UDP analyzers) and harness/analysis/tshark.py's TsharkState, with
 * harness/wire/decode.py's fast path (untagged Ethernet, IPv4 without options, TCP).
 * tests/unit/test_speedups.py holds it to them, conversation by conversation, on every reference
 * capture, the Zeek conformance corpus and thousands of random conversations.
 *
 * The interface, which harness/analysis/pipeline.py owns:
 *
 * Scanner(limits, on_finished, as_json=False)
 *   limits: a dict of the analysis's constants and settings, from the Python modules that define them
 *       (nothing is copied here): pipeline.scanner_limits() says which.
 *   on_finished(facts) gets each ended conversation as the dict of facts its summary record is
 *       made of (harness.analysis.summary.FACTS; summary.facts() makes the same from a Python
 *       Conversation), in the order the tracker ends them; with as_json, the text of its summary
 *       record as summary.record_json(facts) writes it instead.
 *   .feed_records(records, decode_slow): records is an iterable of wire.reader.Record; those the fast
 *       path cannot take go to decode_slow(record, frame), which returns a Packet, a list of
 *       Packets, or None (it warns, skips and ties ICMP errors to conversations itself).
 *   .pcap_records(...), .pcapng_packets(...): the reader's bulk protocol (wire.reader.BulkConsumer):
 *       whole, sane records taken straight from the reader's buffer, inside feed_records.
 *   .feed_unreachable(quote, frame, time_ns): as ConversationTracker.feed_unreachable.
 *   .feed_corrupt(packet): as ConversationTracker.feed_corrupt (a packet with a bad checksum).
 *   .finish(): every conversation still open ends, in order of first packet.
 *   .packets: the TCP and UDP packets fed; .frames: every record read.
 *
 * Times are int64 nanoseconds since the epoch, as the reader guarantees (it refuses a timestamp
 * outside 1677-2262 as damage); a block whose time would not fit is left to the reader, which says so.
 * Zeek's 32- and 64-bit unsigned arithmetic is uint32_t and uint64_t here, as zeek.py masks it.
 * Only CPython's public API is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

typedef int64_t nstime;      /* nanoseconds since the epoch */
/* A timer's time: a packet's time plus a delay, which past 2262 no longer fits in 64 bits; Python's
 * integers do not wrap, so neither may these. */
typedef __int128 timer_time;

#define TCP 6
#define UDP 17
#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define ACK 0x10

#define SEQ_MODULO ((int64_t)1 << 32)
#define HALF_SEQ_SPACE ((int64_t)1 << 31)
#define SECOND ((nstime)1000000000)    /* the unit, not a tunable: pcap timestamps are seconds + ticks */

/* The analysis's constants and settings, as Scanner() is given them. */
typedef struct {
    nstime tcp_syn_timeout, tcp_session_timer, tcp_connection_linger, tcp_attempt_delay, tcp_close_delay;
    nstime tcp_inactivity_timeout, udp_inactivity_timeout;
    nstime fast_retransmission_window, default_out_of_order_threshold;
    int64_t too_large_seq_delta, history_scale, max_buffered_runs;
    int64_t tcp_max_initial_window, tcp_max_above_hole_without_any_acks, tcp_excessive_data_without_further_acks;
    int report_gaps_for_partial, verify_checksums;
    unsigned char likely_tcp[65536], likely_udp[65536];
} Limits;

enum { INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET };
enum { LETTER_T, LETTER_W, LETTER_C, LETTER_G, SCALED_LETTERS };
static const char SCALED_CODES[] = "TWCG";
/* History kinds of Connection::CheckHistory, one bit each per direction. */
enum { KIND_SYN, KIND_FIN, KIND_RST, KIND_FIN_RST, KIND_MULTI_FLAG, KIND_DATA, KIND_ACK, KIND_UDP_DATA };
enum { TIMER_EXPIRE, TIMER_ATTEMPT, TIMER_CONN_DELETE, TIMER_INACTIVITY };

static int64_t pymod(int64_t value) {          /* value % SEQ_MODULO, as Python computes it */
    int64_t r = value % SEQ_MODULO;
    return r < 0 ? r + SEQ_MODULO : r;
}

static int64_t seq_delta(int64_t a, int64_t b) {
    int64_t d = pymod(a - b);
    return d >= HALF_SEQ_SPACE ? d - SEQ_MODULO : d;
}

/* -- growable arrays ---------------------------------------------------------------------------- */

typedef struct { uint64_t start, end; } Run;

typedef struct Side {
    struct Side *peer;
    /* zeek.py's ZeekEndpoint */
    int is_orig, state, prev_state, did_close;
    uint32_t start_seq, last_seq, ack_seq, seq_wraps, ack_wraps;
    int64_t fin_cnt;
    uint64_t fin_seq, hist_last_syn, hist_last_fin, hist_last_rst;
    uint32_t scaled_count[SCALED_LETTERS], scaled_threshold[SCALED_LETTERS];
    int64_t packets, ip_bytes, udp_size;
    uint64_t missed_bytes;
    uint32_t *payloads;
    Py_ssize_t npayloads, payloads_cap;
    /* its Reassembler */
    uint64_t delivered, trim_seq;
    Run *runs;
    Py_ssize_t nruns, runs_cap;
    int skip_deliveries, did_eof;
    /* tshark.py's TsharkEndpoint */
    int64_t retransmissions, out_of_order, duplicate_acks;
    int64_t next_seq;                 /* 0: unknown, as in tshark */
    nstime next_seq_time;
    int64_t max_seq_to_ack;
    int has_last_ack;
    int64_t last_ack;
    nstime last_ack_time;
    int has_window;
    int64_t window;
    int64_t dupacks_in_a_row;
    int keep_alive;
} Side;

typedef struct Conv {
    const Limits *limits;              /* the scanner's */
    struct Conv *bucket_next;          /* hash chain */
    struct Conv *prev, *next;          /* open conversations, in order of insertion */
    /* key: the lower (address, port) first */
    unsigned char key_addr[2][16];
    int key_port[2];
    int family_len;                    /* 4 or 16 */
    int proto;
    uint64_t hash;
    /* conversation */
    Py_ssize_t index;
    /* its first packet's frame; the last frame of its own (a packet, or an ICMP error it was given);
     * the frame it ended at (0: the capture's end) */
    Py_ssize_t first_frame, last_frame, end_frame;
    unsigned char orig_addr[16], resp_addr[16];
    int orig_port, resp_port;
    PyObject *orig_host, *resp_host;   /* str, or NULL until needed */
    PyObject *unreachable;             /* list of (frame, time_ns), or NULL */
    int ended;                         /* handed over; freed once no timer refers to it */
    Py_ssize_t timer_refs;
    /* zeek.py's ZeekState */
    Side sides[2];
    Side *orig, *resp;
    char *history;
    Py_ssize_t history_len, history_cap;
    uint32_t hist_seen;
    int64_t flips;
    nstime start_time, last_time;
    int is_active, is_partial, first_packet_seen[2], close_deferred, deferred_gen_event;
    nstime inactivity_timeout;
    int64_t analyzer_generation, inactivity_generation;
    /* tshark.py's TsharkState */
    int has_initial_rtt, has_syn_time;
    nstime initial_rtt, syn_time;
} Conv;

typedef struct {
    timer_time when;
    uint64_t order;
    Conv *conv;
    int kind;
    int64_t generation;
} Timer;

typedef struct { char *data; size_t len, cap; } Text;

typedef struct {
    PyObject_HEAD
    Limits limits;
    PyObject *on_finished;
    int as_json;                       /* on_finished gets the record's JSON text, not the facts */
    Text json_text, key_text;          /* reused for every record */
    Conv **buckets;
    size_t nbuckets, count;
    Conv *first, *last;
    Py_ssize_t started;
    Py_ssize_t packets;
    Py_ssize_t frame;
    int finishing;                     /* inside finish(): what ends now ends with the capture */
    PyObject *decode_slow;             /* borrowed, while feed_records runs */
    int has_network_time;
    nstime network_time;
    Timer *timers;                     /* a binary heap by (when, order) */
    Py_ssize_t ntimers, timers_cap;
    Py_ssize_t stale_timers;           /* in the heap, for conversations already ended */
    uint64_t timer_order;
} Scanner;

static int grow(void **items, Py_ssize_t *cap, Py_ssize_t need, size_t size) {
    if (need <= *cap) return 0;
    Py_ssize_t cap2 = *cap ? *cap * 2 : 8;
    while (cap2 < need) cap2 *= 2;
    void *bigger = PyMem_Realloc(*items, (size_t)cap2 * size);
    if (!bigger) { PyErr_NoMemory(); return -1; }
    *items = bigger;
    *cap = cap2;
    return 0;
}

/* -- nstime <-> Python int ---------------------------------------------------------------------- */

static int time_from_py(PyObject *value, nstime *out) {
    long long small = PyLong_AsLongLong(value);
    if (small == -1 && PyErr_Occurred()) return -1;
    *out = small;
    return 0;
}

static PyObject *time_to_py(nstime value) { return PyLong_FromLongLong((long long)value); }

/* -- the timer queue (tracker.py's heap of (time, order, conversation, kind, generation)) --------- */

static int timer_before(const Timer *a, const Timer *b) {
    return a->when < b->when || (a->when == b->when && a->order < b->order);
}

static Scanner *current_scanner;     /* the scanner whose conversation is being fed (set by feed_packet) */

static int add_timer(Conv *c, timer_time when, int kind) {
    Scanner *s = current_scanner;
    if (grow((void **)&s->timers, &s->timers_cap, s->ntimers + 1, sizeof(Timer)) < 0) return -1;
    Timer t = {when, ++s->timer_order, c, kind,
               kind == TIMER_INACTIVITY ? c->inactivity_generation : c->analyzer_generation};
    Py_ssize_t i = s->ntimers++;
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!timer_before(&t, &s->timers[parent])) break;
        s->timers[i] = s->timers[parent];
        i = parent;
    }
    s->timers[i] = t;
    c->timer_refs++;
    return 0;
}

static Timer pop_timer(Scanner *s) {
    Timer top = s->timers[0], last = s->timers[--s->ntimers];
    Py_ssize_t i = 0, n = s->ntimers;
    while (1) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && timer_before(&s->timers[child + 1], &s->timers[child])) child++;
        if (!timer_before(&s->timers[child], &last)) break;
        s->timers[i] = s->timers[child];
        i = child;
    }
    if (n) s->timers[i] = last;
    return top;
}

/* -- zeek.py --------------------------------------------------------------------------------------- */

static void init_side(Side *side, int is_orig, Side *peer) {
    memset(side, 0, sizeof *side);
    side->peer = peer;
    side->is_orig = is_orig;
    side->state = side->prev_state = INACTIVE;
    side->udp_size = -1;
    side->delivered = side->trim_seq = 1;
    for (int i = 0; i < SCALED_LETTERS; i++) side->scaled_threshold[i] = 1;
}

static int history_append(Conv *c, char code) {
    if (grow((void **)&c->history, &c->history_cap, c->history_len + 1, 1) < 0) return -1;
    c->history[c->history_len++] = code;
    return 0;
}

static char lower(char code) { return (code >= 'A' && code <= 'Z') ? (char)(code - 'A' + 'a') : code; }

static void flip(Conv *c) {
    Side *was_orig = c->orig;
    c->orig = c->resp;
    c->resp = was_orig;
    c->orig->is_orig = 1;
    c->resp->is_orig = 0;
    int seen = c->first_packet_seen[0];
    c->first_packet_seen[0] = c->first_packet_seen[1];
    c->first_packet_seen[1] = seen;
    c->is_partial = 0;
    c->flips++;
    unsigned char addr[16];
    memcpy(addr, c->orig_addr, sizeof addr);
    memcpy(c->orig_addr, c->resp_addr, sizeof addr);
    memcpy(c->resp_addr, addr, sizeof addr);
    int port = c->orig_port;
    c->orig_port = c->resp_port;
    c->resp_port = port;
    PyObject *host = c->orig_host;
    c->orig_host = c->resp_host;
    c->resp_host = host;
}

static int flip_roles(Conv *c) {      /* Connection::FlipRoles */
    flip(c);
    return history_append(c, '^');
}

/* Connection::CheckHistory: 1 if seen before, 0 if recorded now, -1 on error. */
static int conn_check_history(Conv *c, int kind, int is_orig, char code) {
    uint32_t bit = (uint32_t)1 << (kind + (is_orig ? 0 : 16));
    if (c->hist_seen & bit) return 1;
    c->hist_seen |= bit;
    return history_append(c, code) < 0 ? -1 : 0;
}

/* TCP_Endpoint::CheckHistory, with its flip of a connection that began with a SYN-ACK. */
static int check_history(Conv *c, Side *endpoint, int kind, char code) {
    if ((code == 'A' || code == 'D') && c->history_len == 1 && c->history[0] == 'H') {
        flip(c);
        c->history[0] = '^';
        if (history_append(c, 'h') < 0) return -1;
        c->first_packet_seen[0] = 1;
    }
    if (!endpoint->is_orig) code = lower(code);
    return conn_check_history(c, kind, endpoint->is_orig, code);
}

static int add_history(Conv *c, const Side *endpoint, char code) {
    return history_append(c, endpoint->is_orig ? code : lower(code));
}

static int scaled_letter(Conv *c, Side *endpoint, int letter, char code) {
    uint32_t *count = &endpoint->scaled_count[letter], *threshold = &endpoint->scaled_threshold[letter];
    *count += 1;
    if (*count == *threshold) {
        if (history_append(c, code) < 0) return -1;
        uint32_t next = (uint32_t)((uint64_t)*threshold * (uint64_t)c->limits->history_scale);
        if (next <= *threshold) *count = 0;
        else *threshold = next;
    }
    return 0;
}

static int scaled(Conv *c, Side *endpoint, int letter) {
    char code = SCALED_CODES[letter];
    return scaled_letter(c, endpoint, letter, endpoint->is_orig ? code : lower(code));
}

static uint64_t full_seq(uint32_t seq, uint32_t wraps) { return ((uint64_t)wraps << 32) + seq; }

static uint64_t relative(const Side *side, uint32_t seq, uint32_t wraps) {
    return full_seq(seq, wraps) - (uint64_t)side->start_seq;
}

static int no_data_acked(const Side *side) {
    uint64_t ack = full_seq(side->ack_seq, side->ack_wraps), start = side->start_seq;
    return ack == start || ack == start + 1;
}

static uint64_t payload_bytes(const Side *side) {
    if (side->udp_size >= 0) return (uint64_t)side->udp_size;
    if (side->prev_state == SYN_SENT && side->state == RESET && side->peer->state == INACTIVE && !no_data_acked(side))
        return 0;
    uint64_t last = full_seq(side->last_seq, side->seq_wraps), ack = full_seq(side->ack_seq, side->ack_wraps);
    uint64_t size = (last > ack ? last : ack) - (uint64_t)side->start_seq;
    if (size) size--;
    if (side->fin_cnt && size) size--;
    return size;
}

static uint64_t relative_seq(const Side *side, uint32_t seq, uint32_t last, uint32_t wraps, int *underflow) {
    int64_t delta = seq_delta(seq, last);
    if (delta < 0) {
        if (wraps && seq > last) wraps--;
    } else if (delta > 0) {
        if (seq < last) wraps++;
    }
    if (wraps == 0) {
        delta = seq_delta(seq, side->start_seq);
        *underflow = delta < 0;
        return (uint64_t)delta;
    }
    *underflow = 0;
    return relative(side, seq, wraps);
}

static void set_last_seq(Side *side, uint32_t seq) {
    if (seq < side->last_seq) side->seq_wraps++;
    side->last_seq = seq;
}

static void set_ack_seq(Side *side, uint32_t seq) {
    if (seq < side->ack_seq) side->ack_wraps++;
    side->ack_seq = seq;
}

static void init_sequence(Side *side, uint32_t start, uint32_t last) {
    side->start_seq = side->ack_seq = start;
    side->last_seq = last;
}

static int is_handshake(int state) { return state == INACTIVE || state == SYN_SENT || state == SYN_ACK_SENT; }

static int set_inactivity_timeout(Conv *c, nstime timeout) {
    if (timeout == c->inactivity_timeout) return 0;
    c->inactivity_generation++;
    c->inactivity_timeout = timeout;
    return add_timer(c, (timer_time)c->last_time + timeout, TIMER_INACTIVITY);
}

static int set_state(Conv *c, Side *endpoint, int state) {
    if (state != endpoint->state) {
        if (!is_handshake(state) && is_handshake(endpoint->state) && is_handshake(endpoint->peer->state)
                && set_inactivity_timeout(c, c->limits->tcp_inactivity_timeout) < 0)
            return -1;
        endpoint->prev_state = endpoint->state;
        endpoint->state = state;
    }
    return 0;
}

static void set_partial_status(Conv *c, int flags, int is_orig) {
    if (is_orig) {
        if (!c->first_packet_seen[0]) c->is_partial = !(flags & SYN) || (flags & ACK);
    } else if (!c->first_packet_seen[1] && !c->is_partial) {
        c->is_partial = !(flags & SYN);
    }
}

static void init_endpoint(Side *endpoint, int flags, uint32_t first_seg_seq, uint32_t last_seq) {
    switch (endpoint->state) {
    case INACTIVE:
        if (flags & SYN) {
            endpoint->start_seq = endpoint->ack_seq = first_seg_seq;
        } else {
            endpoint->start_seq = endpoint->ack_seq = first_seg_seq - 1;
            last_seq = first_seg_seq;
        }
        endpoint->last_seq = last_seq;
        break;
    case SYN_SENT:
    case SYN_ACK_SENT:
        if ((flags & SYN) && first_seg_seq != endpoint->start_seq) init_sequence(endpoint, first_seg_seq, last_seq);
        break;
    case ESTABLISHED:
    case PARTIAL:
        if (flags & SYN) init_sequence(endpoint, first_seg_seq, last_seq);
        break;
    case RESET:
        if ((flags & SYN) && endpoint->prev_state == INACTIVE) init_sequence(endpoint, first_seg_seq, last_seq);
        break;
    }
}

/* Returns 1 if the segment retransmitted payload, 0 if not, -1 on error. */
static int update_last_seq(Conv *c, Side *endpoint, uint32_t last_seq, int flags, int64_t length) {
    int64_t delta_last = seq_delta(last_seq, endpoint->last_seq);
    int64_t too_large = c->limits->too_large_seq_delta;
    if ((flags & (SYN | RST)) && (delta_last > too_large || delta_last < -too_large)) return 0;
    if ((flags & FIN) && endpoint->last_seq == (uint32_t)(endpoint->start_seq + 1)) {
        set_last_seq(endpoint, last_seq);
        return 0;
    }
    if (endpoint->state == RESET) return 0;
    if (delta_last > 0) {
        set_last_seq(endpoint, last_seq);
        return 0;
    }
    if (length > 0) return scaled(c, endpoint, LETTER_T) < 0 ? -1 : 1;
    return 0;
}

static int update_history(Conv *c, Side *endpoint, int flags, uint64_t rel_seq, int64_t length) {
    int bits = ((flags & SYN) != 0) + ((flags & FIN) != 0) + ((flags & RST) != 0);
    int seen;
    if (bits > 1) {
        if ((flags & FIN) && (flags & RST)) return check_history(c, endpoint, KIND_FIN_RST, 'I') < 0 ? -1 : 0;
        return check_history(c, endpoint, KIND_MULTI_FLAG, 'Q') < 0 ? -1 : 0;
    }
    if (bits == 1) {
        if (flags & SYN) {
            char code = (flags & ACK) ? 'H' : 'S';
            if ((seen = check_history(c, endpoint, KIND_SYN, code)) < 0) return -1;
            if (seen && rel_seq != endpoint->hist_last_syn && add_history(c, endpoint, code) < 0) return -1;
            endpoint->hist_last_syn = rel_seq;
        }
        if (flags & FIN) {
            uint64_t fin_at = rel_seq + (uint64_t)length;
            if ((seen = check_history(c, endpoint, KIND_FIN, 'F')) < 0) return -1;
            if (seen && fin_at != endpoint->hist_last_fin && add_history(c, endpoint, 'F') < 0) return -1;
            endpoint->hist_last_fin = fin_at;
        }
        if (flags & RST) {
            if ((seen = check_history(c, endpoint, KIND_RST, 'R')) < 0) return -1;
            if (seen && rel_seq != endpoint->hist_last_rst && add_history(c, endpoint, 'R') < 0) return -1;
            endpoint->hist_last_rst = rel_seq;
        }
        return 0;
    }
    if (length) return check_history(c, endpoint, KIND_DATA, 'D') < 0 ? -1 : 0;
    if (flags & ACK) return check_history(c, endpoint, KIND_ACK, 'A') < 0 ? -1 : 0;
    return 0;
}

/* (do_close, gen_event) as bits 1 and 2; -1 on error. */
#define DO_CLOSE 1
#define GEN_EVENT 2

static int update_inactive_state(Conv *c, nstime now, Side *endpoint, Side *peer, uint32_t base_seq, int64_t length,
                                 int is_orig, int flags) {
    int result = 0;
    if (flags & SYN) {
        if (is_orig) {
            if (set_state(c, endpoint, (flags & ACK) ? SYN_ACK_SENT : SYN_SENT) < 0) return -1;
            if (add_timer(c, (timer_time)now + c->limits->tcp_attempt_delay, TIMER_ATTEMPT) < 0) return -1;
        } else {
            if (!(flags & ACK) && peer->state == SYN_ACK_SENT && base_seq == endpoint->start_seq) {
                if (flip_roles(c) < 0 || set_state(c, peer, ESTABLISHED) < 0) return -1;
                c->first_packet_seen[0] = 1;
            }
            if (peer->state == SYN_SENT && set_state(c, peer, ESTABLISHED) < 0) return -1;
            if (set_state(c, endpoint, ESTABLISHED) < 0) return -1;
        }
    }
    if (flags & FIN) {
        if (set_state(c, endpoint, CLOSED) < 0) return -1;
        result = DO_CLOSE | GEN_EVENT;
    }
    if (flags & RST) {
        if (set_state(c, endpoint, RESET) < 0) return -1;
        int is_reject = is_orig ? peer->state == ESTABLISHED : (peer->state == SYN_SENT || peer->state == SYN_ACK_SENT);
        result = DO_CLOSE | (is_reject ? 0 : GEN_EVENT);
    }
    if (endpoint->state == INACTIVE) {
        if (!is_orig && length == 0 && c->orig->state == SYN_SENT) {
            /* an ACK of the SYN before the SYN-ACK: not a partial start */
        } else if ((flags & ACK) && peer->state == ESTABLISHED) {
            if (set_state(c, endpoint, ESTABLISHED) < 0) return -1;
            c->is_partial = 0;
            c->first_packet_seen[is_orig ? 0 : 1] = 1;
        } else if (set_state(c, endpoint, PARTIAL) < 0) {
            return -1;
        }
    }
    return result;
}

static int update_state_machine(Conv *c, nstime now, Side *endpoint, Side *peer, uint32_t base_seq, int64_t length,
                                int is_orig, int flags) {
    int state = endpoint->state, result = 0;
    if (state == INACTIVE) return update_inactive_state(c, now, endpoint, peer, base_seq, length, is_orig, flags);
    if (state == SYN_SENT || state == SYN_ACK_SENT) {
        if (flags & FIN) {
            if (set_state(c, endpoint, CLOSED) < 0) return -1;
            result = DO_CLOSE | GEN_EVENT;
        }
        if (flags & RST) {
            if (set_state(c, endpoint, RESET) < 0) return -1;
            c->is_active = 0;
            result |= DO_CLOSE;
        }
        return result;
    }
    if (state == ESTABLISHED || state == PARTIAL) {
        if ((flags & SYN) && state == PARTIAL && peer->state == INACTIVE && !(flags & ACK)
                && set_state(c, endpoint, SYN_SENT) < 0)
            return -1;
        if ((flags & FIN) && !(flags & RST)) {
            if (set_state(c, endpoint, CLOSED) < 0) return -1;
            if (peer->state == RESET && peer->prev_state == CLOSED && set_state(c, peer, CLOSED) < 0) return -1;
            result = DO_CLOSE | GEN_EVENT;
        }
        if (flags & RST) {
            if (set_state(c, endpoint, RESET) < 0) return -1;
            result |= DO_CLOSE;
            if (peer->state != RESET || peer->prev_state != ESTABLISHED) c->is_active = 0;
        }
        return result;
    }
    if (state == CLOSED && (flags & RST) && peer->state != CLOSED) {
        if (set_state(c, endpoint, RESET) < 0) return -1;
        return endpoint->did_close ? 0 : DO_CLOSE;
    }
    return 0;
}

/* -- the reassembler, gaps and the close that waits for them ---------------------------------------- */

static uint64_t buffered(const Side *side) {
    uint64_t total = 0;
    for (Py_ssize_t i = 0; i < side->nruns; i++) total += side->runs[i].end - side->runs[i].start;
    return total;
}

static uint64_t undelivered(const Side *side) {
    return side->nruns ? side->runs[side->nruns - 1].end - side->delivered : 0;
}

/* Record [seq, upper) as arrived; 1 with the untrimmed part in *from, *to; 0 if all trimmed; -1 on error. */
static int insert_run(Side *side, uint64_t seq, uint64_t upper, uint64_t *from, uint64_t *to) {
    if (upper <= side->trim_seq) return 0;
    if (seq < side->trim_seq) seq = side->trim_seq;
    Py_ssize_t index = 0;
    while (index < side->nruns && side->runs[index].end < seq) index++;
    uint64_t start = seq, end = upper;
    Py_ssize_t last = index;
    while (last < side->nruns && side->runs[last].start <= end) {
        if (side->runs[last].start < start) start = side->runs[last].start;
        if (side->runs[last].end > end) end = side->runs[last].end;
        last++;
    }
    Py_ssize_t removed = last - index;
    if (removed == 0) {
        if (grow((void **)&side->runs, &side->runs_cap, side->nruns + 1, sizeof(Run)) < 0) return -1;
        memmove(&side->runs[index + 1], &side->runs[index], (size_t)(side->nruns - index) * sizeof(Run));
        side->nruns++;
    } else if (removed > 1) {
        memmove(&side->runs[index + 1], &side->runs[last], (size_t)(side->nruns - last) * sizeof(Run));
        side->nruns -= removed - 1;
    }
    side->runs[index].start = start;
    side->runs[index].end = end;
    *from = seq;
    *to = upper;
    return 1;
}

static void deliver_from(Side *side, uint64_t seq, uint64_t upper) {
    if (seq > side->delivered || upper <= side->delivered) return;
    for (Py_ssize_t i = 0; i < side->nruns; i++)
        if (side->runs[i].start <= side->delivered && side->delivered < side->runs[i].end) {
            side->delivered = side->runs[i].end;
            return;
        }
}

static void clear_runs(Side *side) {
    side->nruns = 0;
    side->skip_deliveries = 1;
}

static int is_clean(const Side *side) {
    return side->state == ESTABLISHED || (side->state == CLOSED && side->prev_state == ESTABLISHED);
}

static int gap(Conv *c, Side *endpoint, uint64_t length) {
    int clean = is_clean(endpoint) && is_clean(endpoint->peer);
    if (clean && scaled(c, endpoint, LETTER_G) < 0) return -1;
    if (c->limits->report_gaps_for_partial || clean) endpoint->missed_bytes += length;
    return 0;
}

static int trim_to_seq(Conv *c, Side *endpoint, uint64_t seq);

static int block_inserted(Conv *c, Side *endpoint, uint64_t seq, uint64_t upper) {
    uint64_t before = endpoint->delivered;
    deliver_from(endpoint, seq, upper);
    if (endpoint->delivered == before) return 0;
    int64_t window = c->limits->tcp_max_initial_window;
    if (no_data_acked(endpoint) && window && payload_bytes(endpoint) > (uint64_t)window)
        return trim_to_seq(c, endpoint, endpoint->delivered);
    return 0;
}

static int undelivered_to(Conv *c, Side *endpoint, uint64_t up_to_seq) {
    if (up_to_seq <= 2 && c->is_partial) return 0;
    if (!endpoint->skip_deliveries) {
        /* over a copy of the runs, as zeek.py iterates list(runs): block_inserted may trim them */
        Py_ssize_t n = endpoint->nruns;
        Run *copy = n ? PyMem_Malloc((size_t)n * sizeof(Run)) : NULL;
        if (n && !copy) { PyErr_NoMemory(); return -1; }
        if (n) memcpy(copy, endpoint->runs, (size_t)n * sizeof(Run));
        int failed = 0;
        for (Py_ssize_t i = 0; i < n && !failed; i++) {
            if (copy[i].start < endpoint->delivered) continue;
            if (copy[i].start >= up_to_seq) break;
            failed = gap(c, endpoint, copy[i].start - endpoint->delivered) < 0;
            endpoint->delivered = copy[i].start;
            if (!failed) failed = block_inserted(c, endpoint, copy[i].start, copy[i].end) < 0;
        }
        PyMem_Free(copy);
        if (failed) return -1;
        if (up_to_seq > endpoint->delivered && gap(c, endpoint, up_to_seq - endpoint->delivered) < 0) return -1;
    }
    if (up_to_seq > endpoint->delivered) endpoint->delivered = up_to_seq;
    return 0;
}

static int trim_to_seq(Conv *c, Side *endpoint, uint64_t seq) {
    if (seq > endpoint->delivered && undelivered_to(c, endpoint, seq) < 0) return -1;
    Py_ssize_t drop = 0;
    while (drop < endpoint->nruns && endpoint->runs[drop].end <= seq) drop++;
    if (drop) {
        memmove(endpoint->runs, endpoint->runs + drop, (size_t)(endpoint->nruns - drop) * sizeof(Run));
        endpoint->nruns -= drop;
    }
    if (endpoint->nruns && endpoint->runs[0].start <= endpoint->delivered && endpoint->delivered < endpoint->runs[0].end)
        deliver_from(endpoint, endpoint->delivered, endpoint->runs[0].end);
    endpoint->trim_seq = seq;
    return 0;
}

static int data_sent(Conv *c, Side *endpoint, uint64_t seq, int64_t length) {
    if (endpoint->skip_deliveries) return 0;
    uint64_t ack = relative(endpoint, endpoint->ack_seq, endpoint->ack_wraps);
    uint64_t upper = seq + (uint64_t)length;
    if (seq < ack) {
        if (upper <= ack) return 0;
        seq = ack;
    }
    uint64_t from, to;
    int inserted = insert_run(endpoint, seq, upper, &from, &to);
    if (inserted < 0 || (inserted && block_inserted(c, endpoint, from, to) < 0)) return -1;
    const Limits *L = c->limits;
    if (no_data_acked(endpoint) && L->tcp_max_above_hole_without_any_acks
            && undelivered(endpoint) > (uint64_t)L->tcp_max_above_hole_without_any_acks)
        clear_runs(endpoint);
    else if ((L->tcp_excessive_data_without_further_acks
              && buffered(endpoint) > (uint64_t)L->tcp_excessive_data_without_further_acks)
             || endpoint->nruns > L->max_buffered_runs)
        clear_runs(endpoint);
    return 0;
}

static int data_pending(const Side *endpoint) {
    if (endpoint->skip_deliveries) return 0;
    uint64_t delivered = (uint64_t)endpoint->start_seq + endpoint->delivered;
    uint64_t last = full_seq(endpoint->last_seq, endpoint->seq_wraps);
    if (last < delivered) return 0;
    if (delivered != last - 1 && delivered != last) return 1;
    return endpoint->state != RESET && endpoint->peer->nruns > 0;
}

static int connection_closed(Conv *c, Side *endpoint, Side *peer, int gen_event);

static int check_eof(Conv *c, Side *endpoint) {
    if (!endpoint->did_eof && (endpoint->fin_cnt || endpoint->state == CLOSED || endpoint->state == RESET)
            && !data_pending(endpoint)) {
        endpoint->did_eof = 1;
        if (c->close_deferred) {
            if (connection_closed(c, endpoint, endpoint->peer, c->deferred_gen_event) < 0) return -1;
            c->close_deferred = 0;
        }
    }
    return 0;
}

static int ack_received(Conv *c, Side *endpoint, uint64_t seq) {
    if (endpoint->fin_cnt && seq >= endpoint->fin_seq) seq = endpoint->fin_seq - 1;
    if (seq <= endpoint->trim_seq) return 0;
    if (trim_to_seq(c, endpoint, seq) < 0) return -1;
    return check_eof(c, endpoint);
}

static int connection_closed(Conv *c, Side *endpoint, Side *peer, int gen_event) {
    if (data_pending(endpoint)) {
        c->close_deferred = 1;
        c->deferred_gen_event = c->deferred_gen_event || gen_event;
        return 0;
    }
    c->close_deferred = 0;
    if (endpoint->did_close) return 0;
    endpoint->did_close = 1;
    if (endpoint->state == RESET || peer->did_close || peer->state == INACTIVE) {
        if (endpoint->prev_state != INACTIVE || peer->state != INACTIVE) {
            if (c->deferred_gen_event) {
                gen_event = 1;
                c->deferred_gen_event = 0;
            }
            if (gen_event) c->is_active = 0;
        }
        c->analyzer_generation++;
        return add_timer(c, (timer_time)c->last_time + c->limits->tcp_close_delay, TIMER_CONN_DELETE);
    }
    if (endpoint->prev_state != INACTIVE)
        return add_timer(c, (timer_time)c->last_time + c->limits->tcp_session_timer, TIMER_EXPIRE);
    return 0;
}

/* -- tshark.py ---------------------------------------------------------------------------------- */

enum { RESEND_NONE, RESEND_RETRANSMISSION, RESEND_OUT_OF_ORDER };

static int classify_resend(const Conv *c, const Side *side, const Side *peer, int flags, int64_t seq,
                           int64_t length, nstime now) {
    int64_t next_seq = side->next_seq;
    int has_last_ack = peer->has_last_ack;
    int64_t last_ack = peer->last_ack;
    if (length && has_last_ack && last_ack
            && (pymod(seq + length - last_ack) >= HALF_SEQ_SPACE || pymod(seq + length - last_ack) == 0))
        return RESEND_RETRANSMISSION;
    if (!next_seq || pymod(seq - next_seq) < HALF_SEQ_SPACE || (length > 1 && seq == pymod(next_seq - 1)))
        return RESEND_NONE;
    if (peer->dupacks_in_a_row != 0 && peer->dupacks_in_a_row != 1 && has_last_ack && last_ack == seq
            && now - peer->last_ack_time < c->limits->fast_retransmission_window)
        return RESEND_RETRANSMISSION;
    nstime threshold = (c->has_initial_rtt && c->initial_rtt) ? c->initial_rtt
                                                               : c->limits->default_out_of_order_threshold;
    if (now - side->next_seq_time < threshold
            && next_seq != pymod(seq + length + ((flags & (SYN | FIN)) != 0)))
        return RESEND_OUT_OF_ORDER;
    return RESEND_RETRANSMISSION;
}

static void tshark_feed(Conv *c, Side *side, Side *peer, int flags, int64_t seq, int64_t ack, int64_t window,
                        int64_t length, nstime now) {
    int64_t next_seq = side->next_seq;
    int probe = 0, keep_alive = 0;
    if (length <= 1) {
        if (length && seq == next_seq && peer->has_window && peer->window == 0) probe = 1;
        else if (!(flags & (SYN | FIN | RST)) && seq == pymod(next_seq - 1)) keep_alive = 1;
    }
    if (!length && window && side->has_window && window == side->window && seq == next_seq
            && side->has_last_ack && ack == side->last_ack && !(flags & (SYN | FIN | RST)) && !peer->keep_alive) {
        side->dupacks_in_a_row = side->dupacks_in_a_row < 0 ? 1 : side->dupacks_in_a_row + 1;
        side->duplicate_acks++;
    } else if (!side->has_last_ack || ack != side->last_ack) {
        side->dupacks_in_a_row = 0;
    }
    int64_t peer_max = peer->max_seq_to_ack;
    if ((flags & ACK) && peer_max && pymod(peer_max - ack) >= HALF_SEQ_SPACE) {
        if (peer_max != peer->next_seq) peer->max_seq_to_ack = peer->next_seq;
        else peer->dupacks_in_a_row = -1;
    }
    if ((length || (flags & (SYN | FIN))) && !keep_alive) {
        int resend = classify_resend(c, side, peer, flags, seq, length, now);
        if (resend == RESEND_RETRANSMISSION) side->retransmissions++;
        else if (resend == RESEND_OUT_OF_ORDER) side->out_of_order++;
    }
    if (!probe) {
        int64_t end = pymod(seq + length + ((flags & (SYN | FIN)) != 0));
        if (!next_seq || pymod(next_seq - end) >= HALF_SEQ_SPACE) {
            side->next_seq = end;
            side->next_seq_time = now;
        }
        if (seq == side->max_seq_to_ack || !side->max_seq_to_ack) side->max_seq_to_ack = side->next_seq;
    }
    side->has_last_ack = 1;
    side->last_ack = ack;
    side->last_ack_time = now;
    side->has_window = 1;
    side->window = window;
    side->keep_alive = keep_alive;
    if (!c->has_initial_rtt) {
        if (flags & SYN) {
            if (!(flags & ACK)) { c->has_syn_time = 1; c->syn_time = now; }
        } else if ((flags & ACK) && c->has_syn_time && now != c->syn_time) {
            c->has_initial_rtt = 1;
            c->initial_rtt = now - c->syn_time;
        }
    }
}

/* -- a packet through Zeek's TCP and UDP analyzers, then tshark's ------------------------------- */

typedef struct {
    nstime time;
    const unsigned char *src, *dst;
    int family_len, proto, sport, dport, flags;
    int64_t payload_len, captured, seq, ack, window, ip_len;
    PyObject *src_host, *dst_host;    /* borrowed str, or NULL (made from the address when needed) */
} PacketFields;

static int append_payload(Side *side, int64_t length) {
    if (grow((void **)&side->payloads, &side->payloads_cap, side->npayloads + 1, sizeof(uint32_t)) < 0) return -1;
    side->payloads[side->npayloads++] = (uint32_t)length;
    return 0;
}

/* TCPSessionAdapter::Process; returns 1 if it retransmitted payload, 0 if not, -1 on error. */
static int process(Conv *c, const PacketFields *p, Side *endpoint, Side *peer, int is_orig) {
    int flags = p->flags;
    uint32_t base_seq = (uint32_t)p->seq, ack_seq = (uint32_t)p->ack;
    int64_t length = p->payload_len;
    nstime now = p->time;
    set_partial_status(c, flags, is_orig);
    int64_t seg_len = length + ((flags & SYN) != 0) + ((flags & FIN) != 0) - ((flags & RST) ? length : 0);
    uint32_t seq_one_past_segment = (uint32_t)(base_seq + (uint64_t)seg_len);
    init_endpoint(endpoint, flags, base_seq, seq_one_past_segment);
    int seq_underflow;
    uint64_t rel_seq = relative_seq(endpoint, base_seq, endpoint->last_seq, endpoint->seq_wraps, &seq_underflow);
    if (update_history(c, endpoint, flags, rel_seq, length) < 0) return -1;
    if (p->window == 0 && !(flags & RST) && peer->state != CLOSED && endpoint->state != RESET
            && scaled(c, endpoint, LETTER_W) < 0)
        return -1;
    if (!(c->orig->did_close && c->resp->did_close)) c->last_time = now;
    if (flags & FIN) {
        endpoint->fin_cnt++;
        endpoint->fin_seq = rel_seq + (uint64_t)seg_len;
    }
    uint64_t rel_ack = 0;
    if (flags & ACK) {
        if (peer->state == INACTIVE) {
            rel_ack = 1;
            init_sequence(peer, ack_seq - 1, ack_seq - 1);
        } else {
            int ack_underflow;
            rel_ack = relative_seq(peer, ack_seq, peer->ack_seq, peer->ack_wraps, &ack_underflow);
            if (ack_underflow) {
                rel_ack = 0;
            } else if (!(flags & RST)) {
                int64_t delta_ack = seq_delta(ack_seq, peer->ack_seq);
                if (!(ack_seq == 0 && delta_ack > c->limits->too_large_seq_delta) && delta_ack > 0)
                    set_ack_seq(peer, ack_seq);
            }
        }
    }
    int retransmitted = update_last_seq(c, endpoint, seq_one_past_segment, flags, length);
    if (retransmitted < 0) return -1;
    int closing = update_state_machine(c, now, endpoint, peer, base_seq, length, is_orig, flags);
    if (closing < 0) return -1;
    if ((flags & ACK) && ack_received(c, peer, rel_ack) < 0) return -1;
    uint64_t rel_data_seq = (flags & SYN) ? rel_seq + 1 : rel_seq;
    if (length > 0 && p->captured >= length && !(flags & RST) && !seq_underflow
            && data_sent(c, endpoint, rel_data_seq, length) < 0)
        return -1;
    c->first_packet_seen[is_orig ? 0 : 1] = 1;
    if (check_eof(c, endpoint) < 0) return -1;
    if ((closing & DO_CLOSE) && connection_closed(c, endpoint, peer, (closing & GEN_EVENT) != 0) < 0) return -1;
    return retransmitted;
}

/* ZeekState.feed, then TsharkState.feed in the orientation the packet leaves the connection in. */
static int conv_feed(Conv *c, const PacketFields *p, int is_orig) {
    Side *endpoint = is_orig ? c->orig : c->resp;
    if (c->proto != TCP) {
        c->last_time = p->time;
        if (conn_check_history(c, KIND_UDP_DATA, is_orig, is_orig ? 'D' : 'd') < 0) return -1;
        endpoint->udp_size = endpoint->udp_size < 0 ? p->payload_len : endpoint->udp_size + p->payload_len;
        endpoint->state = ESTABLISHED;
        endpoint->packets++;
        endpoint->ip_bytes += p->ip_len;
        return append_payload(endpoint, p->payload_len);
    }
    if (process(c, p, endpoint, endpoint->peer, is_orig) < 0) return -1;
    endpoint->packets++;
    endpoint->ip_bytes += p->ip_len;
    if (p->payload_len && append_payload(endpoint, p->payload_len) < 0) return -1;
    tshark_feed(c, endpoint, endpoint->peer, p->flags, p->seq, p->ack, p->window, p->payload_len, p->time);
    return 0;
}

static int checksum_error(Conv *c, int is_orig) {
    Side *endpoint = is_orig ? c->orig : c->resp;
    if (c->proto == TCP) return scaled(c, endpoint, LETTER_C);
    return scaled_letter(c, endpoint, LETTER_C, is_orig ? 'C' : 'c');
}

/* ZeekState.on_timer: 1 if the connection ends, 0 if not, -1 on error. */
static int on_timer(Conv *c, int kind, int64_t generation, nstime now) {
    if (kind == TIMER_INACTIVITY) {
        if (generation != c->inactivity_generation) return 0;
        if ((timer_time)c->last_time + c->inactivity_timeout <= now) return 1;
        return add_timer(c, (timer_time)c->last_time + c->inactivity_timeout, TIMER_INACTIVITY) < 0 ? -1 : 0;
    }
    if (generation != c->analyzer_generation) return 0;
    if (kind == TIMER_CONN_DELETE) return 1;
    if (!c->is_active) return 0;
    Side *orig = c->orig, *resp = c->resp;
    if (kind == TIMER_ATTEMPT) {
        if ((orig->state == SYN_SENT || orig->state == SYN_ACK_SENT) && resp->state == INACTIVE) {
            c->is_active = 0;
            return 1;
        }
        return 0;
    }
    if ((timer_time)c->last_time + c->limits->tcp_connection_linger < now) {
        if (orig->did_close || resp->did_close) {
            if ((orig->did_close && resp->did_close) || orig->state == RESET || resp->state == RESET
                    || orig->state == INACTIVE || resp->state == INACTIVE) {
                c->is_active = 0;
                return 1;
            }
        }
        if (orig->state == INACTIVE && resp->state == INACTIVE) return 1;
    }
    return add_timer(c, (timer_time)now + c->limits->tcp_session_timer, TIMER_EXPIRE) < 0 ? -1 : 0;
}

static int is_reuse(const Conv *c, int flags, uint32_t seq) {
    if (!(flags & SYN)) return 0;
    const Side *opener = c->orig;
    if (flags & ACK) {
        if (c->orig->state != INACTIVE) return 0;
        opener = c->resp;
    }
    if (!(c->orig->did_close || c->resp->did_close)) {
        if (seq == opener->start_seq) return 0;
        if (!(flags & ACK) && opener->state == SYN_ACK_SENT && c->resp->state == INACTIVE && seq == c->resp->start_seq)
            return 0;
    }
    return 1;
}

/* -- tracker.py: conversations by key ---------------------------------------------------------- */

typedef struct {
    unsigned char addr[2][16];
    int port[2];
    int family_len, proto;
    uint64_t hash;
} Key;

static void make_key(Key *key, const unsigned char *src, int sport, const unsigned char *dst, int dport,
                     int family_len, int proto) {
    int order = memcmp(src, dst, (size_t)family_len);
    int swap = order > 0 || (order == 0 && sport > dport);
    memset(key->addr, 0, sizeof key->addr);
    memcpy(key->addr[0], swap ? dst : src, (size_t)family_len);
    memcpy(key->addr[1], swap ? src : dst, (size_t)family_len);
    key->port[0] = swap ? dport : sport;
    key->port[1] = swap ? sport : dport;
    key->family_len = family_len;
    key->proto = proto;
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
    for (int side = 0; side < 2; side++) {
        for (int i = 0; i < family_len; i++) { h ^= key->addr[side][i]; h *= 1099511628211ULL; }
        h ^= (uint64_t)key->port[side]; h *= 1099511628211ULL;
    }
    h ^= (uint64_t)proto * 31 + (uint64_t)family_len;
    h *= 1099511628211ULL;
    key->hash = h;
}

static int key_matches(const Conv *c, const Key *key) {
    return c->hash == key->hash && c->proto == key->proto && c->family_len == key->family_len
        && c->key_port[0] == key->port[0] && c->key_port[1] == key->port[1]
        && memcmp(c->key_addr, key->addr, sizeof key->addr) == 0;
}

static Conv *lookup(Scanner *s, const Key *key) {
    if (!s->nbuckets) return NULL;
    for (Conv *c = s->buckets[key->hash & (s->nbuckets - 1)]; c; c = c->bucket_next)
        if (key_matches(c, key)) return c;
    return NULL;
}

static int insert(Scanner *s, Conv *c) {
    if (s->count + 1 > s->nbuckets / 2) {
        size_t n = s->nbuckets ? s->nbuckets * 2 : 1024;
        Conv **buckets = PyMem_Calloc(n, sizeof(Conv *));
        if (!buckets) { PyErr_NoMemory(); return -1; }
        for (Conv *each = s->first; each; each = each->next) {
            size_t b = each->hash & (n - 1);
            each->bucket_next = buckets[b];
            buckets[b] = each;
        }
        PyMem_Free(s->buckets);
        s->buckets = buckets;
        s->nbuckets = n;
    }
    size_t b = c->hash & (s->nbuckets - 1);
    c->bucket_next = s->buckets[b];
    s->buckets[b] = c;
    c->prev = s->last;
    c->next = NULL;
    if (s->last) s->last->next = c; else s->first = c;
    s->last = c;
    s->count++;
    return 0;
}

static void unlink_conv(Scanner *s, Conv *c) {
    Conv **link = &s->buckets[c->hash & (s->nbuckets - 1)];
    while (*link != c) link = &(*link)->bucket_next;
    *link = c->bucket_next;
    if (c->prev) c->prev->next = c->next; else s->first = c->next;
    if (c->next) c->next->prev = c->prev; else s->last = c->prev;
    s->count--;
}

/* Everything but the struct itself, which the timer queue may still point to. */
static void release_conv(Conv *c) {
    Py_CLEAR(c->orig_host);
    Py_CLEAR(c->resp_host);
    Py_CLEAR(c->unreachable);
    PyMem_Free(c->history);
    c->history = NULL;
    for (int i = 0; i < 2; i++) {
        PyMem_Free(c->sides[i].payloads);
        PyMem_Free(c->sides[i].runs);
        c->sides[i].payloads = NULL;
        c->sides[i].runs = NULL;
    }
}

static PyObject *host_string(const unsigned char *addr, int family_len) {
    char text[INET6_ADDRSTRLEN];
    if (!inet_ntop(family_len == 4 ? AF_INET : AF_INET6, addr, text, sizeof text))
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyUnicode_FromString(text);
}

/* -- zeek.py's verdict: conn_state, and the facts a summary record is made of ------------------- */

/* history matches ^?S[^HAFGIQ]*R.* */
static int rstos0_history(const Conv *c) {
    const char *letter = c->history, *end = c->history + c->history_len;
    if (letter < end && *letter == '^') letter++;
    if (letter == end || *letter++ != 'S') return 0;
    for (; letter < end; letter++) {
        if (*letter == 'R') return 1;
        if (strchr("HAFGIQ", *letter)) return 0;
    }
    return 0;
}

static const char *conn_state(const Conv *c) {
    int os = c->orig->state, rs = c->resp->state;
    if (c->proto != TCP) {
        if (os != INACTIVE) return rs != INACTIVE ? "SF" : "S0";
        return rs != INACTIVE ? "SHR" : "OTH";
    }
    int o_inactive = os == INACTIVE || os == PARTIAL, r_inactive = rs == INACTIVE || rs == PARTIAL;
    if (rs == RESET) {
        if (os == SYN_SENT || os == SYN_ACK_SENT
                || (os == RESET && payload_bytes(c->orig) == 0 && payload_bytes(c->resp) == 0))
            return "REJ";
        return o_inactive ? "RSTRH" : "RSTR";
    }
    if (os == RESET) {
        if (r_inactive) return rstos0_history(c) ? "RSTOS0" : "OTH";
        return "RSTO";
    }
    if (os == CLOSED && rs == CLOSED) return "SF";
    if (os == CLOSED) return r_inactive ? "SH" : "S2";
    if (rs == CLOSED) return o_inactive ? "SHR" : "S3";
    if (os == SYN_SENT && rs == INACTIVE) return "S0";
    if (os == ESTABLISHED && rs == ESTABLISHED) return "S1";
    return "OTH";
}

static PyObject *payload_list(const Side *side) {
    PyObject *list = PyList_New(side->npayloads);
    if (!list) return NULL;
    for (Py_ssize_t i = 0; i < side->npayloads; i++) {
        PyObject *length = PyLong_FromUnsignedLong(side->payloads[i]);
        if (!length) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, i, length);
    }
    return list;
}

/* A frame number, or None for 0 (a new reference, for Py_BuildValue's N). */
static PyObject *frame_or_none(Py_ssize_t frame) {
    if (frame) return PyLong_FromSsize_t(frame);
    Py_INCREF(Py_None);
    return Py_None;
}

/* The facts, keyed as harness.analysis.summary.FACTS names them. */
static PyObject *conv_facts(Conv *c) {
    if (!c->orig_host && !(c->orig_host = host_string(c->orig_addr, c->family_len))) return NULL;
    if (!c->resp_host && !(c->resp_host = host_string(c->resp_addr, c->family_len))) return NULL;
    PyObject *history = PyUnicode_FromStringAndSize(c->history ? c->history : "", c->history_len);
    PyObject *orig_payloads = payload_list(c->orig), *resp_payloads = payload_list(c->resp);
    PyObject *facts = NULL;
    if (history && orig_payloads && resp_payloads) {
        int tcp = c->proto == TCP;
        facts = Py_BuildValue(
            "{s:n,s:i,s:O,s:i,s:O,s:i,s:L,s:L,s:s,s:O,s:L,s:L,s:K,s:K,s:L,s:L,s:O,s:O,s:L,s:L,s:L,s:K,s:n,s:n,s:n,s:N}",
            "index", c->index, "proto", c->proto, "orig_h", c->orig_host, "orig_p", c->orig_port,
            "resp_h", c->resp_host, "resp_p", c->resp_port, "first_time_ns", (long long)c->start_time,
            "last_time_ns", (long long)c->last_time, "conn_state", conn_state(c), "history", history,
            "orig_pkts", (long long)c->orig->packets, "resp_pkts", (long long)c->resp->packets,
            "orig_bytes", (unsigned long long)payload_bytes(c->orig),
            "resp_bytes", (unsigned long long)payload_bytes(c->resp),
            "orig_ip_bytes", (long long)c->orig->ip_bytes, "resp_ip_bytes", (long long)c->resp->ip_bytes,
            "orig_payloads", orig_payloads, "resp_payloads", resp_payloads,
            "retransmissions", tcp ? (long long)(c->orig->retransmissions + c->resp->retransmissions) : 0LL,
            "out_of_order", tcp ? (long long)(c->orig->out_of_order + c->resp->out_of_order) : 0LL,
            "duplicate_acks", tcp ? (long long)(c->orig->duplicate_acks + c->resp->duplicate_acks) : 0LL,
            "missed_bytes", (unsigned long long)(c->orig->missed_bytes + c->resp->missed_bytes),
            "icmp_unreachable", c->unreachable ? PyList_GET_SIZE(c->unreachable) : (Py_ssize_t)0,
            "first_frame", c->first_frame, "last_frame", c->last_frame,
            "end_frame", frame_or_none(c->end_frame));
    }
    Py_XDECREF(history);
    Py_XDECREF(orig_payloads);
    Py_XDECREF(resp_payloads);
    return facts;
}


/* -- summary.py's record(facts), as the JSON text json.dumps(record) writes ----------------------- */
/* For `harness summary --json`, where building each record as a dict only to encode it was most of
 * the time per conversation. summary.record_json is the specification; the tests hold this to it. */

static int text_reserve(Text *t, size_t more) {
    if (t->len + more <= t->cap) return 0;
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->len + more) cap *= 2;
    char *bigger = PyMem_Realloc(t->data, cap);
    if (!bigger) { PyErr_NoMemory(); return -1; }
    t->data = bigger;
    t->cap = cap;
    return 0;
}

static int text_add(Text *t, const char *bytes, size_t n) {
    if (text_reserve(t, n) < 0) return -1;
    memcpy(t->data + t->len, bytes, n);
    t->len += n;
    return 0;
}

static int text_cstr(Text *t, const char *s) { return text_add(t, s, strlen(s)); }

/* Decimal digits by hand: snprintf's format parsing was a tenth of the time of a lab record. */
static int text_ull(Text *t, unsigned long long value) {
    char digits[24];
    char *end = digits + sizeof digits, *digit = end;
    do { *--digit = (char)('0' + value % 10); value /= 10; } while (value);
    return text_add(t, digit, (size_t)(end - digit));
}

static int text_ll(Text *t, long long value) {
    if (value >= 0) return text_ull(t, (unsigned long long)value);
    return text_add(t, "-", 1) < 0 ? -1 : text_ull(t, 0ULL - (unsigned long long)value);
}

/* A JSON string as json.dumps writes it (ensure_ascii); what is written here is ASCII anyway. */
static int text_json_string(Text *t, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (text_reserve(t, 6 * n + 2) < 0) return -1;
    char *out = t->data + t->len;
    *out++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') { *out++ = '\\'; *out++ = (char)ch; }
        else if (ch == '\n') { *out++ = '\\'; *out++ = 'n'; }
        else if (ch == '\r') { *out++ = '\\'; *out++ = 'r'; }
        else if (ch == '\t') { *out++ = '\\'; *out++ = 't'; }
        else if (ch == '\b') { *out++ = '\\'; *out++ = 'b'; }
        else if (ch == '\f') { *out++ = '\\'; *out++ = 'f'; }
        else if (ch < 0x20 || ch > 0x7e) {
            *out++ = '\\'; *out++ = 'u'; *out++ = '0'; *out++ = '0';
            *out++ = hex[ch >> 4]; *out++ = hex[ch & 15];
        }
        else *out++ = (char)ch;
    }
    *out++ = '"';
    t->len = (size_t)(out - t->data);
    return 0;
}

/* repr(nanoseconds / SECOND): Python's true division of integers is correctly rounded, which a C
 * division of the (already rounded) double is not past 2**53 ns, so Python divides. */
static char *seconds_repr(nstime ns) {
    PyObject *numerator = PyLong_FromLongLong((long long)ns), *denominator = PyLong_FromLongLong(SECOND);
    PyObject *quotient = numerator && denominator ? PyNumber_TrueDivide(numerator, denominator) : NULL;
    Py_XDECREF(numerator);
    Py_XDECREF(denominator);
    if (!quotient) return NULL;
    double value = PyFloat_AsDouble(quotient);
    Py_DECREF(quotient);
    if (value == -1.0 && PyErr_Occurred()) return NULL;
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!text) PyErr_NoMemory();
    return text;
}

/* SHA-1 (FIPS 180-4), for summary._uid's digest. */
static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *block) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)block[4 * i] << 24) | ((uint32_t)block[4 * i + 1] << 16)
             | ((uint32_t)block[4 * i + 2] << 8) | block[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        uint32_t temp = rol32(a, 5) + f + e + k + w[i];
        e = d; d = c; c = rol32(b, 30); b = a; a = temp;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void sha1(const unsigned char *data, size_t n, unsigned char digest[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t whole = n - n % 64;
    for (size_t i = 0; i < whole; i += 64) sha1_block(h, data + i);
    unsigned char tail[128] = {0};
    size_t rest = n - whole;
    memcpy(tail, data + whole, rest);
    tail[rest] = 0x80;
    size_t tail_len = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < tail_len; i += 64) sha1_block(h, tail + i);
    for (int i = 0; i < 5; i++) {
        digest[4 * i] = (unsigned char)(h[i] >> 24); digest[4 * i + 1] = (unsigned char)(h[i] >> 16);
        digest[4 * i + 2] = (unsigned char)(h[i] >> 8); digest[4 * i + 3] = (unsigned char)h[i];
    }
}

static int text_endpoint(Text *t, const char *host, int port) {      /* str(Endpoint) */
    int v6 = strchr(host, ':') != NULL;
    if ((v6 && text_cstr(t, "[") < 0) || text_cstr(t, host) < 0 || (v6 && text_cstr(t, "]") < 0)
            || text_cstr(t, ":") < 0)
        return -1;
    return text_ll(t, port);
}

static const char BASE62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
#define UID_DIGITS 17

/* summary._uid: "C" and 17 base-62 digits of the first 13 bytes of the key's SHA-1, two at a time. */
static int uid_text(Text *key, const char *ts, int proto, const char *orig_h, int orig_p, const char *resp_h,
                    int resp_p, Py_ssize_t index, char out[UID_DIGITS + 2]) {
    key->len = 0;
    if (text_cstr(key, ts) < 0 || text_cstr(key, "|") < 0 || text_ll(key, proto) < 0 || text_cstr(key, "|") < 0
            || text_endpoint(key, orig_h, orig_p) < 0 || text_cstr(key, "|") < 0
            || text_endpoint(key, resp_h, resp_p) < 0 || text_cstr(key, "|") < 0 || text_ll(key, index) < 0)
        return -1;
    unsigned char digest[20];
    sha1((const unsigned char *)key->data, key->len, digest);
    unsigned __int128 number = 0;
    for (int i = 0; i < 13; i++) number = (number << 8) | digest[i];
    char *digit = out;
    *digit++ = 'C';
    for (int i = 0; i < UID_DIGITS / 2; i++) {
        unsigned pair = (unsigned)(number % (62 * 62));
        number /= 62 * 62;
        *digit++ = BASE62[pair % 62];
        *digit++ = BASE62[pair / 62];
    }
    *digit++ = BASE62[(unsigned)(number % 62)];
    *digit = '\0';
    return 0;
}

static int text_payloads(Text *t, const Side *side) {
    if (text_cstr(t, "[") < 0) return -1;
    for (Py_ssize_t i = 0; i < side->npayloads; i++)
        if ((i && text_cstr(t, ", ") < 0) || text_ull(t, side->payloads[i]) < 0) return -1;
    return text_cstr(t, "]");
}

#define KEY(name) (text_cstr(t, (first ? (first = 0, "{\"" name "\": ") : ", \"" name "\": ")) < 0)

/* The record's JSON text into t (emptied first); its fields in record()'s order. */
static int conv_record_json(Scanner *s, Conv *c, Text *t) {
    char orig_h[INET6_ADDRSTRLEN], resp_h[INET6_ADDRSTRLEN];
    if (!inet_ntop(c->family_len == 4 ? AF_INET : AF_INET6, c->orig_addr, orig_h, sizeof orig_h)
            || !inet_ntop(c->family_len == 4 ? AF_INET : AF_INET6, c->resp_addr, resp_h, sizeof resp_h)) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    char *ts = seconds_repr(c->start_time);
    if (!ts) return -1;
    char *duration = seconds_repr(c->last_time - c->start_time);
    char uid[UID_DIGITS + 2];
    int failed = !duration || uid_text(&s->key_text, ts, c->proto, orig_h, c->orig_port, resp_h, c->resp_port,
                                       c->index, uid) < 0;
    int tcp = c->proto == TCP, first = 1;
    const char *proto = c->proto == TCP ? "tcp" : c->proto == UDP ? "udp" : NULL;
    char proto_digits[16];
    if (!proto) { snprintf(proto_digits, sizeof proto_digits, "%d", c->proto); proto = proto_digits; }
    const char *state = conn_state(c);
    t->len = 0;
    failed = failed
        || KEY("ts") || text_cstr(t, ts) < 0
        || KEY("uid") || text_json_string(t, uid, strlen(uid)) < 0
        || KEY("proto") || text_json_string(t, proto, strlen(proto)) < 0
        || KEY("id.orig_h") || text_json_string(t, orig_h, strlen(orig_h)) < 0
        || KEY("id.orig_p") || text_ll(t, c->orig_port) < 0
        || KEY("id.resp_h") || text_json_string(t, resp_h, strlen(resp_h)) < 0
        || KEY("id.resp_p") || text_ll(t, c->resp_port) < 0
        || KEY("duration") || text_cstr(t, duration) < 0
        || KEY("conn_state") || text_json_string(t, state, strlen(state)) < 0
        || KEY("history") || text_json_string(t, c->history ? c->history : "", (size_t)c->history_len) < 0
        || KEY("orig_pkts") || text_ll(t, c->orig->packets) < 0
        || KEY("resp_pkts") || text_ll(t, c->resp->packets) < 0
        || KEY("orig_bytes") || text_ull(t, payload_bytes(c->orig)) < 0
        || KEY("resp_bytes") || text_ull(t, payload_bytes(c->resp)) < 0
        || KEY("orig_ip_bytes") || text_ll(t, c->orig->ip_bytes) < 0
        || KEY("resp_ip_bytes") || text_ll(t, c->resp->ip_bytes) < 0
        || KEY("ip_proto") || text_ll(t, c->proto) < 0
        || KEY("orig_payloads") || text_payloads(t, c->orig) < 0
        || KEY("resp_payloads") || text_payloads(t, c->resp) < 0
        || KEY("retransmissions") || text_ll(t, tcp ? c->orig->retransmissions + c->resp->retransmissions : 0) < 0
        || KEY("out_of_order") || text_ll(t, tcp ? c->orig->out_of_order + c->resp->out_of_order : 0) < 0
        || KEY("duplicate_acks") || text_ll(t, tcp ? c->orig->duplicate_acks + c->resp->duplicate_acks : 0) < 0
        || KEY("missed_bytes") || text_ull(t, c->orig->missed_bytes + c->resp->missed_bytes) < 0
        || KEY("icmp_unreachable") || text_ll(t, c->unreachable ? PyList_GET_SIZE(c->unreachable) : 0) < 0
        || KEY("conversation") || text_ll(t, c->index) < 0
        || text_cstr(t, "}") < 0;
    PyMem_Free(ts);
    PyMem_Free(duration);
    return failed ? -1 : 0;
}
#undef KEY

/* A restored heap property after dropping some entries: each kept timer keeps its (when, order), a
 * total order, so the timers still fire in exactly the order they would have. */
static void heapify(Scanner *s) {
    Py_ssize_t n = s->ntimers;
    for (Py_ssize_t start = n / 2 - 1; start >= 0; start--) {
        Timer moving = s->timers[start];
        Py_ssize_t i = start;
        while (1) {
            Py_ssize_t child = 2 * i + 1;
            if (child >= n) break;
            if (child + 1 < n && timer_before(&s->timers[child + 1], &s->timers[child])) child++;
            if (!timer_before(&s->timers[child], &moving)) break;
            s->timers[i] = s->timers[child];
            i = child;
        }
        s->timers[i] = moving;
    }
}

/* An ended conversation's timers would do nothing when they fire, but each holds the conversation
 * until then: a lab capture's 5-minute inactivity timers would hold every conversation of the
 * file. Once they are most of the heap, they go (linear, so amortized constant per timer). */
static void drop_stale_timers(Scanner *s) {
    if (s->stale_timers < 1024 || s->stale_timers * 2 < s->ntimers) return;
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < s->ntimers; i++) {
        Conv *c = s->timers[i].conv;
        if (c->ended) {
            if (--c->timer_refs == 0) PyMem_Free(c);
        }
        else s->timers[kept++] = s->timers[i];
    }
    s->ntimers = kept;
    s->stale_timers = 0;
    heapify(s);
}

/* Ends a conversation: out of the table, then to on_finished; freed now or when its last timer goes. */
static int end_conv(Scanner *s, Conv *c) {
    unlink_conv(s, c);
    c->ended = 1;
    c->end_frame = s->finishing ? 0 : s->frame;
    PyObject *handed;
    if (s->as_json)
        handed = conv_record_json(s, c, &s->json_text) < 0 ? NULL
            : PyUnicode_DecodeASCII(s->json_text.data, (Py_ssize_t)s->json_text.len, NULL);
    else
        handed = conv_facts(c);
    release_conv(c);
    s->stale_timers += c->timer_refs;
    if (!c->timer_refs) PyMem_Free(c);
    if (!handed) return -1;
    PyObject *result = PyObject_CallOneArg(s->on_finished, handed);
    Py_DECREF(handed);
    if (!result) return -1;
    Py_DECREF(result);
    drop_stale_timers(s);
    return 0;
}

/* tracker.py's _advance: every timer due by `now`, in order. */
static int advance(Scanner *s, nstime now) {
    while (s->ntimers && s->timers[0].when <= now) {
        Timer t = pop_timer(s);
        Conv *c = t.conv;
        c->timer_refs--;
        if (c->ended) {
            s->stale_timers--;
            if (!c->timer_refs) PyMem_Free(c);
            continue;
        }
        int ends = on_timer(c, t.kind, t.generation, now);
        if (ends < 0) return -1;
        if (ends && end_conv(s, c) < 0) return -1;
    }
    return 0;
}

/* tracker.py's _flips_at_start. */
static int flips_at_start(const Limits *L, const PacketFields *p) {
    int flip = 0;
    if (p->proto == TCP) {
        if ((p->flags & SYN) && !(p->flags & ACK)) return 0;
        if (L->likely_tcp[p->sport])
            flip = L->likely_tcp[p->dport] ? (!(p->flags & SYN) && p->sport < p->dport) : 1;
    } else {
        flip = L->likely_udp[p->sport] && !L->likely_udp[p->dport];
    }
    static const unsigned char broadcast[4] = {255, 255, 255, 255};
    return flip && !(p->family_len == 4 && memcmp(p->dst, broadcast, 4) == 0);
}

/* tracker.py's _lookup: the packet's conversation, made if it has none (or a SYN reuses the pair). */
static Conv *conv_for(Scanner *s, const PacketFields *p) {
    current_scanner = s;
    nstime now = p->time;
    if (!s->has_network_time || now > s->network_time) {
        s->has_network_time = 1;
        s->network_time = now;
    }
    if (s->ntimers && s->timers[0].when <= s->network_time && advance(s, s->network_time) < 0) return NULL;
    Key key;
    make_key(&key, p->src, p->sport, p->dst, p->dport, p->family_len, p->proto);
    Conv *c = lookup(s, &key);
    if (c && p->proto == TCP && (p->flags & SYN) && is_reuse(c, p->flags, (uint32_t)p->seq)) {
        if (end_conv(s, c) < 0) return NULL;
        c = NULL;
    }
    if (c) {
        c->last_frame = s->frame;
        return c;
    }
    c = PyMem_Calloc(1, sizeof(Conv));
    if (!c) { PyErr_NoMemory(); return NULL; }
    memcpy(c->key_addr, key.addr, sizeof key.addr);
    c->key_port[0] = key.port[0];
    c->key_port[1] = key.port[1];
    c->family_len = key.family_len;
    c->proto = key.proto;
    c->hash = key.hash;
    c->limits = &s->limits;
    memcpy(c->orig_addr, p->src, (size_t)p->family_len);
    memcpy(c->resp_addr, p->dst, (size_t)p->family_len);
    c->orig_port = p->sport;
    c->resp_port = p->dport;
    c->orig_host = p->src_host;
    c->resp_host = p->dst_host;
    Py_XINCREF(c->orig_host);
    Py_XINCREF(c->resp_host);
    c->index = ++s->started;
    c->first_frame = c->last_frame = s->frame;
    c->orig = &c->sides[0];
    c->resp = &c->sides[1];
    init_side(c->orig, 1, c->resp);
    init_side(c->resp, 0, c->orig);
    c->start_time = c->last_time = now;
    c->is_active = 1;
    if (insert(s, c) < 0) { release_conv(c); PyMem_Free(c); return NULL; }
    /* ZeekState.__init__, then the tracker's flip (mark_flipped) */
    if (p->proto == TCP && add_timer(c, (timer_time)s->network_time + s->limits.tcp_syn_timeout, TIMER_EXPIRE) < 0)
        return NULL;
    if (set_inactivity_timeout(c, s->limits.udp_inactivity_timeout) < 0) return NULL;
    if (flips_at_start(&s->limits, p) && flip_roles(c) < 0) return NULL;
    return c;
}

static int is_from_orig(const Conv *c, const PacketFields *p) {
    return p->sport == c->orig_port && memcmp(p->src, c->orig_addr, (size_t)p->family_len) == 0;
}

static int feed_packet(Scanner *s, const PacketFields *p) {
    Conv *c = conv_for(s, p);
    if (!c) return -1;
    if (conv_feed(c, p, is_from_orig(c, p)) < 0) return -1;
    s->packets++;
    return 0;
}

static int feed_corrupt_packet(Scanner *s, const PacketFields *p) {
    Conv *c = conv_for(s, p);
    if (!c) return -1;
    return checksum_error(c, is_from_orig(c, p)) < 0 ? -1 : 0;
}

/* -- input: records (decode.py's fast path) or Packets from the Python decoder ------------------ */

static int address_from_str(PyObject *host, unsigned char *out, int *family_len) {
    const char *text = PyUnicode_AsUTF8(host);
    if (!text) return -1;
    if (strchr(text, ':')) {
        if (inet_pton(AF_INET6, text, out) != 1) goto bad;
        *family_len = 16;
    } else {
        if (inet_pton(AF_INET, text, out) != 1) goto bad;
        *family_len = 4;
    }
    return 0;
bad:
    PyErr_Format(PyExc_ValueError, "not an IP address: %R", host);
    return -1;
}

static long long item_ll(PyObject *tuple, Py_ssize_t index) {
    return PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, index));
}

/* A Packet tuple: (frame, time_ns, src, dst, proto, sport, dport, payload_len, payload, seq, ack, flags,
 * window, mss, wscale, ip_len); `corrupt`: its checksum was bad (ConversationTracker.feed_corrupt). */
static int feed_packet_tuple(Scanner *s, PyObject *packet, int corrupt) {
    if (!PyTuple_Check(packet) || PyTuple_GET_SIZE(packet) < 13) {
        PyErr_SetString(PyExc_TypeError, "expected a harness.packet.Packet");
        return -1;
    }
    unsigned char src[16], dst[16];
    PacketFields p;
    int src_len, dst_len;
    if (address_from_str(PyTuple_GET_ITEM(packet, 2), src, &src_len) < 0) return -1;
    if (address_from_str(PyTuple_GET_ITEM(packet, 3), dst, &dst_len) < 0) return -1;
    if (src_len != dst_len) {
        PyErr_SetString(PyExc_ValueError, "a packet's addresses are of different families");
        return -1;
    }
    if (time_from_py(PyTuple_GET_ITEM(packet, 1), &p.time) < 0) return -1;
    p.src = src;
    p.dst = dst;
    p.family_len = src_len;
    p.proto = (int)item_ll(packet, 4);
    p.sport = (int)item_ll(packet, 5);
    p.dport = (int)item_ll(packet, 6);
    p.payload_len = item_ll(packet, 7);
    p.seq = item_ll(packet, 9);
    p.ack = item_ll(packet, 10);
    p.flags = (int)item_ll(packet, 11);
    p.window = item_ll(packet, 12);
    p.ip_len = PyTuple_GET_SIZE(packet) > 15 ? item_ll(packet, 15) : 0;
    PyObject *payload = PyTuple_GET_ITEM(packet, 8);
    p.captured = PyBytes_Check(payload) ? PyBytes_GET_SIZE(payload) : p.payload_len;
    if (PyErr_Occurred()) return -1;
    p.src_host = PyTuple_GET_ITEM(packet, 2);
    p.dst_host = PyTuple_GET_ITEM(packet, 3);
    return corrupt ? feed_corrupt_packet(s, &p) : feed_packet(s, &p);
}

static unsigned be16(const unsigned char *b) { return ((unsigned)b[0] << 8) | b[1]; }
static uint32_t be32(const unsigned char *b) {
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

/* decode.py's fast path for one frame; returns 1 if it took the frame (feeding it; *failed on error),
 * 0 if the Python decoder must have it. */
static int feed_frame(Scanner *s, long linktype, nstime time, Py_ssize_t caplen, long long origlen,
                      const unsigned char *d, int *failed) {
    *failed = 0;
    if (linktype != 1 || caplen < 54 || origlen < caplen || s->limits.verify_checksums) return 0;
    unsigned ethertype = be16(d + 12), version_ihl = d[14], total_length = be16(d + 16);
    unsigned fragment = be16(d + 20), proto = d[23];
    unsigned header_len = (unsigned)(d[46] >> 4) * 4;
    if (!(ethertype == 0x0800 && version_ihl == 0x45 && proto == TCP && !(fragment & 0x1FFF)
          && 40 <= total_length && (long long)total_length <= origlen - 14
          && 20 <= header_len && header_len <= total_length - 20))
        return 0;
    PacketFields p;
    p.time = time;
    p.src = d + 26;
    p.dst = d + 30;
    p.family_len = 4;
    p.proto = TCP;
    p.sport = (int)be16(d + 34);
    p.dport = (int)be16(d + 36);
    p.seq = be32(d + 38);
    p.ack = be32(d + 42);
    p.flags = d[47];
    p.window = be16(d + 48);
    p.payload_len = (int64_t)total_length - 20 - header_len;
    p.ip_len = total_length;
    int64_t captured = (int64_t)caplen - 34 - header_len;
    p.captured = captured < 0 ? 0 : captured > p.payload_len ? p.payload_len : captured;
    p.src_host = p.dst_host = NULL;
    if (feed_packet(s, &p) < 0) *failed = 1;
    return 1;
}

/* A pcapfile.Record: (linktype, time_ns, caplen, origlen, data, offset, comments). */
static int feed_record(Scanner *s, PyObject *record) {
    int failed = 0;
    if (PyTuple_Check(record) && PyTuple_GET_SIZE(record) >= 5 && PyBytes_CheckExact(PyTuple_GET_ITEM(record, 4))) {
        PyObject *data = PyTuple_GET_ITEM(record, 4);
        long linktype = PyLong_AsLong(PyTuple_GET_ITEM(record, 0));
        long long origlen = PyLong_AsLongLong(PyTuple_GET_ITEM(record, 3));
        nstime time;
        if (PyErr_Occurred() || time_from_py(PyTuple_GET_ITEM(record, 1), &time) < 0) {
            PyErr_Clear();      /* not a record the fast path understands: the Python decoder judges */
        } else if (feed_frame(s, linktype, time, PyBytes_GET_SIZE(data), origlen,
                              (const unsigned char *)PyBytes_AS_STRING(data), &failed)) {
            return failed ? -1 : 0;
        }
    }
    PyObject *frame = PyLong_FromSsize_t(s->frame);
    PyObject *packet = frame ? PyObject_CallFunctionObjArgs(s->decode_slow, record, frame, NULL) : NULL;
    Py_XDECREF(frame);
    if (packet && PyList_Check(packet)) {       /* a tunnel's packets: the outer first, then the inner */
        for (Py_ssize_t i = 0; !failed && i < PyList_GET_SIZE(packet); i++)
            failed = feed_packet_tuple(s, PyList_GET_ITEM(packet, i), 0) < 0;
    } else {
        failed = !packet || (packet != Py_None && feed_packet_tuple(s, packet, 0) < 0);
    }
    Py_XDECREF(packet);
    return failed ? -1 : 0;
}

static PyObject *Scanner_feed_records(Scanner *s, PyObject *args) {
    PyObject *records, *decode_slow;
    if (!PyArg_ParseTuple(args, "OO:feed_records", &records, &decode_slow)) return NULL;
    PyObject *iterator = PyObject_GetIter(records);
    if (!iterator) return NULL;
    PyObject *record;
    s->decode_slow = decode_slow;      /* borrowed: walk_pcap runs only inside this loop */
    while ((record = PyIter_Next(iterator))) {
        s->frame++;
        int failed = feed_record(s, record) < 0;
        Py_DECREF(record);
        if (failed) break;
    }
    s->decode_slow = NULL;
    Py_DECREF(iterator);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *record_type(void) {
    static PyObject *type;
    if (!type) {
        PyObject *module = PyImport_ImportModule("harness.wire.reader");
        if (!module) return NULL;
        type = PyObject_GetAttrString(module, "Record");
        Py_DECREF(module);
    }
    return type;
}

/* A frame taken from the reader's buffer: fed by the fast path, or made into the Record the reader
 * would have yielded (no comments: the walks take no block with options) for the Python decoder. */
static int feed_raw(Scanner *s, long linktype, nstime time, uint32_t caplen, uint32_t origlen,
                    const unsigned char *data, long long offset) {
    int failed;
    if (feed_frame(s, linktype, time, (Py_ssize_t)caplen, origlen, data, &failed)) return failed ? -1 : 0;
    PyObject *type = record_type();
    PyObject *fields = type ? Py_BuildValue("(lNkkNL())", linktype, time_to_py(time), (unsigned long)caplen,
                                            (unsigned long)origlen,
                                            PyBytes_FromStringAndSize((const char *)data, caplen), offset) : NULL;
    PyObject *record = fields ? PyObject_Call(type, fields, NULL) : NULL;
    failed = !record || feed_record(s, record) < 0;
    Py_XDECREF(fields);
    Py_XDECREF(record);
    return failed ? -1 : 0;
}

static uint32_t u32(const unsigned char *b, int big_endian) {
    return big_endian ? be32(b)
                      : ((uint32_t)b[3] << 24) | ((uint32_t)b[2] << 16) | ((uint32_t)b[1] << 8) | b[0];
}

/* pcapfile's hook for classic pcap (CaptureFile.bulk_pcap): the records that lie whole in buf from
 * pos on, each checked as _pcap_records checks it, are fed without a Record being made, unless the
 * Python decoder must see one. Stops before a record that is not whole or not sane, which the
 * reader then reads (or reports) itself; returns where it stopped. */
static PyObject *Scanner_walk_pcap(Scanner *s, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, limit;
    long linktype;
    long long scale, base;
    int big_endian;
    if (!PyArg_ParseTuple(args, "y*nlLnpL:pcap_records", &view, &pos, &linktype, &scale, &limit, &big_endian, &base))
        return NULL;
    if (!s->decode_slow) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "pcap_records runs inside feed_records only");
        return NULL;
    }
    const unsigned char *buf = view.buf;
    Py_ssize_t size = view.len;
    int failed = 0;
    while (pos >= 0 && size - pos >= 16) {
        const unsigned char *header = buf + pos;
        uint32_t sec = u32(header, big_endian), frac = u32(header + 4, big_endian);
        uint32_t caplen = u32(header + 8, big_endian), origlen = u32(header + 12, big_endian);
        if ((Py_ssize_t)caplen > limit || (Py_ssize_t)caplen > size - pos - 16) break;
        s->frame++;
        nstime time = (nstime)sec * SECOND + (nstime)frac * scale;
        failed = feed_raw(s, linktype, time, caplen, origlen, header + 16, base + (long long)pos) < 0;
        if (failed) break;
        pos += 16 + (Py_ssize_t)caplen;
    }
    PyBuffer_Release(&view);
    if (failed) return NULL;
    return PyLong_FromSsize_t(pos);
}

#define MAX_BULK_INTERFACES 64
#define BLOCK_EPB 6
#define MAX_BLOCK (256 * 1024 * 1024)

/* pcapfile's hook for pcapng (CaptureFile.bulk_pcapng): the Enhanced Packet Blocks that lie whole in
 * buf from pos on, each checked as _pcapng_records checks it, and carrying no options (a packet
 * comment would have to be read into its Record), are fed as walk_pcap feeds records. Stops at
 * any other block or anything unusual, which the reader then handles; returns (where it stopped,
 * the last packet's time_ns or None if it took none). `interfaces` is the reader's table for the
 * section: (linktype, scale, divisor, offset_ns, snaplen) each. */
static PyObject *Scanner_walk_pcapng(Scanner *s, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    int big_endian;
    PyObject *interfaces;
    long long base;
    if (!PyArg_ParseTuple(args, "y*npO!L:pcapng_packets", &view, &pos, &big_endian, &PyList_Type, &interfaces, &base))
        return NULL;
    if (!s->decode_slow) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "pcapng_packets runs inside feed_records only");
        return NULL;
    }
    struct { long linktype; uint64_t scale, divisor; nstime offset; } table[MAX_BULK_INTERFACES];
    Py_ssize_t ninterfaces = PyList_GET_SIZE(interfaces);
    int usable = ninterfaces <= MAX_BULK_INTERFACES;
    for (Py_ssize_t i = 0; usable && i < ninterfaces; i++) {
        PyObject *entry = PyList_GET_ITEM(interfaces, i);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 4) { usable = 0; break; }
        table[i].linktype = PyLong_AsLong(PyTuple_GET_ITEM(entry, 0));
        unsigned long long scale = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(entry, 1));
        unsigned long long divisor = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(entry, 2));
        if (PyErr_Occurred() || time_from_py(PyTuple_GET_ITEM(entry, 3), &table[i].offset) < 0
                || divisor == 0 || scale == 0 || scale > UINT64_MAX / divisor) {
            PyErr_Clear();      /* beyond 64 bits: the reader's own arithmetic takes these blocks */
            usable = 0;
            break;
        }
        table[i].scale = scale;
        table[i].divisor = divisor;
    }
    const unsigned char *buf = view.buf;
    Py_ssize_t size = view.len;
    int failed = 0, took = 0;
    nstime last_time = 0;
    while (usable && pos >= 0 && size - pos >= 32) {
        const unsigned char *block = buf + pos;
        uint32_t btype = u32(block, big_endian), blen = u32(block + 4, big_endian);
        if (btype != BLOCK_EPB || blen < 32 || blen > MAX_BLOCK || (blen & 3) || (Py_ssize_t)blen > size - pos
                || u32(block + blen - 4, big_endian) != blen)
            break;
        uint32_t iface = u32(block + 8, big_endian), ts_high = u32(block + 12, big_endian);
        uint32_t ts_low = u32(block + 16, big_endian), caplen = u32(block + 20, big_endian);
        uint32_t origlen = u32(block + 24, big_endian);
        uint64_t options = 28 + (((uint64_t)caplen + 3) & ~(uint64_t)3);
        if (options != (uint64_t)blen - 4 || (Py_ssize_t)iface >= ninterfaces) break;  /* options, or damage */
        /* ticks * scale / divisor + offset, as the reader computes it, without overflow: quotient and
         * remainder apart (remainder * scale < divisor * scale, which fits). Past int64: the reader's. */
        uint64_t ticks = ((uint64_t)ts_high << 32) | ts_low;
        uint64_t whole, part;
        int64_t time;
        if (__builtin_mul_overflow(ticks / table[iface].divisor, table[iface].scale, &whole)
                || __builtin_add_overflow(whole, ticks % table[iface].divisor * table[iface].scale
                                          / table[iface].divisor, &part)
                || part > (uint64_t)INT64_MAX
                || __builtin_add_overflow((int64_t)part, table[iface].offset, &time))
            break;
        s->frame++;
        failed = feed_raw(s, table[iface].linktype, time, caplen, origlen, block + 28, base + (long long)pos) < 0;
        if (failed) break;
        took = 1;
        last_time = time;
        pos += blen;
    }
    PyBuffer_Release(&view);
    if (failed) return NULL;
    if (!took) return Py_BuildValue("(nO)", pos, Py_None);
    return Py_BuildValue("(nN)", pos, time_to_py(last_time));
}

static PyObject *Scanner_feed_unreachable(Scanner *s, PyObject *args) {
    PyObject *quote, *frame, *time;
    if (!PyArg_ParseTuple(args, "OOO:feed_unreachable", &quote, &frame, &time)) return NULL;
    PyObject *src = PyObject_GetAttrString(quote, "src"), *dst = PyObject_GetAttrString(quote, "dst");
    PyObject *sport = PyObject_GetAttrString(quote, "sport"), *dport = PyObject_GetAttrString(quote, "dport");
    PyObject *proto = PyObject_GetAttrString(quote, "proto");
    PyObject *result = NULL;
    unsigned char src_addr[16], dst_addr[16];
    int src_len, dst_len;
    if (src && dst && sport && dport && proto && address_from_str(src, src_addr, &src_len) == 0
            && address_from_str(dst, dst_addr, &dst_len) == 0) {
        Key key;
        make_key(&key, src_addr, (int)PyLong_AsLong(sport), dst_addr, (int)PyLong_AsLong(dport), src_len,
                 (int)PyLong_AsLong(proto));
        if (!PyErr_Occurred()) {
            Conv *c = src_len == dst_len ? lookup(s, &key) : NULL;
            if (c && !c->unreachable) c->unreachable = PyList_New(0);
            if (c) c->last_frame = PyLong_AsSsize_t(frame);
            PyObject *item = c && c->unreachable ? PyTuple_Pack(2, frame, time) : NULL;
            if (!c || (item && PyList_Append(c->unreachable, item) == 0)) result = Py_None;
            Py_XDECREF(item);
        }
    }
    Py_XDECREF(src); Py_XDECREF(dst); Py_XDECREF(sport); Py_XDECREF(dport); Py_XDECREF(proto);
    Py_XINCREF(result);
    return result;
}

static PyObject *Scanner_feed_corrupt(Scanner *s, PyObject *packet) {
    if (feed_packet_tuple(s, packet, 1) < 0) return NULL;
    Py_RETURN_NONE;
}

/* Empties the timer queue, freeing the conversations that only it still held. */
static void clear_timers(Scanner *s) {
    for (Py_ssize_t i = 0; i < s->ntimers; i++) {
        Conv *c = s->timers[i].conv;
        if (--c->timer_refs == 0 && c->ended) PyMem_Free(c);
    }
    s->ntimers = 0;
    s->stale_timers = 0;
}

static PyObject *Scanner_finish(Scanner *s, PyObject *unused) {
    current_scanner = s;
    s->finishing = 1;
    while (s->first)
        if (end_conv(s, s->first) < 0) return NULL;
    clear_timers(s);
    Py_RETURN_NONE;
}

static int limit_from(PyObject *limits, const char *name, int64_t *out) {
    PyObject *value = PyDict_GetItemString(limits, name);    /* borrowed */
    if (!value) {
        PyErr_Format(PyExc_KeyError, "Scanner limits lack %s", name);
        return -1;
    }
    *out = PyLong_AsLongLong(value);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int ports_from(PyObject *limits, Limits *L) {
    PyObject *ports = PyDict_GetItemString(limits, "likely_server_ports");
    PyObject *sequence = ports ? PySequence_Fast(ports, "likely_server_ports must be a sequence") : NULL;
    if (!sequence) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "Scanner limits lack likely_server_ports");
        return -1;
    }
    memset(L->likely_tcp, 0, sizeof L->likely_tcp);
    memset(L->likely_udp, 0, sizeof L->likely_udp);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(sequence); i++) {
        long port, proto;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(sequence, i), "ll", &port, &proto)) {
            Py_DECREF(sequence);
            return -1;
        }
        if (port < 0 || port > 65535) continue;
        if (proto == TCP) L->likely_tcp[port] = 1;
        else if (proto == UDP) L->likely_udp[port] = 1;
    }
    Py_DECREF(sequence);
    return 0;
}

static int Scanner_init(Scanner *s, PyObject *args, PyObject *kwargs) {
    PyObject *limits, *on_finished;
    int as_json = 0;
    static char *keywords[] = {"limits", "on_finished", "as_json", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O|p:Scanner", keywords, &PyDict_Type, &limits, &on_finished,
                                     &as_json))
        return -1;
    s->as_json = as_json;
    Limits *L = &s->limits;
    int64_t report_gaps, verify;
    if (limit_from(limits, "tcp_syn_timeout", &L->tcp_syn_timeout) < 0
            || limit_from(limits, "tcp_session_timer", &L->tcp_session_timer) < 0
            || limit_from(limits, "tcp_connection_linger", &L->tcp_connection_linger) < 0
            || limit_from(limits, "tcp_attempt_delay", &L->tcp_attempt_delay) < 0
            || limit_from(limits, "tcp_close_delay", &L->tcp_close_delay) < 0
            || limit_from(limits, "tcp_inactivity_timeout", &L->tcp_inactivity_timeout) < 0
            || limit_from(limits, "udp_inactivity_timeout", &L->udp_inactivity_timeout) < 0
            || limit_from(limits, "too_large_seq_delta", &L->too_large_seq_delta) < 0
            || limit_from(limits, "history_scale", &L->history_scale) < 0
            || limit_from(limits, "max_buffered_runs", &L->max_buffered_runs) < 0
            || limit_from(limits, "report_gaps_for_partial", &report_gaps) < 0
            || limit_from(limits, "verify_checksums", &verify) < 0
            || limit_from(limits, "tcp_max_initial_window", &L->tcp_max_initial_window) < 0
            || limit_from(limits, "tcp_max_above_hole_without_any_acks", &L->tcp_max_above_hole_without_any_acks) < 0
            || limit_from(limits, "tcp_excessive_data_without_further_acks",
                          &L->tcp_excessive_data_without_further_acks) < 0
            || limit_from(limits, "fast_retransmission_window", &L->fast_retransmission_window) < 0
            || limit_from(limits, "default_out_of_order_threshold", &L->default_out_of_order_threshold) < 0
            || ports_from(limits, L) < 0)
        return -1;
    L->report_gaps_for_partial = report_gaps != 0;
    L->verify_checksums = verify != 0;
    if (L->history_scale < 2 || L->max_buffered_runs < 1) {
        PyErr_SetString(PyExc_ValueError, "Scanner limits out of range (history_scale, max_buffered_runs)");
        return -1;
    }
    Py_INCREF(on_finished);
    Py_XSETREF(s->on_finished, on_finished);
    return 0;
}

static void Scanner_dealloc(Scanner *s) {
    while (s->first) {
        Conv *c = s->first;
        s->first = c->next;
        c->ended = 1;
        release_conv(c);
        if (!c->timer_refs) PyMem_Free(c);
    }
    clear_timers(s);
    PyMem_Free(s->timers);
    PyMem_Free(s->buckets);
    PyMem_Free(s->json_text.data);
    PyMem_Free(s->key_text.data);
    Py_XDECREF(s->on_finished);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *Scanner_get_packets(Scanner *s, void *closure) { return PyLong_FromSsize_t(s->packets); }
static PyObject *Scanner_get_frames(Scanner *s, void *closure) { return PyLong_FromSsize_t(s->frame); }

static PyMethodDef Scanner_methods[] = {
    {"feed_records", (PyCFunction)Scanner_feed_records, METH_VARARGS, NULL},
    {"pcap_records", (PyCFunction)Scanner_walk_pcap, METH_VARARGS, NULL},
    {"pcapng_packets", (PyCFunction)Scanner_walk_pcapng, METH_VARARGS, NULL},
    {"feed_unreachable", (PyCFunction)Scanner_feed_unreachable, METH_VARARGS, NULL},
    {"feed_corrupt", (PyCFunction)Scanner_feed_corrupt, METH_O, NULL},
    {"finish", (PyCFunction)Scanner_finish, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Scanner_getset[] = {
    {"packets", (getter)Scanner_get_packets, NULL, "TCP and UDP packets fed", NULL},
    {"frames", (getter)Scanner_get_frames, NULL, "records read, TCP/UDP or not", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "harness.analysis._speedups.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ConversationTracker, ZeekState and TsharkState for summaries, in C (see the module source).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
    .tp_getset = Scanner_getset,
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "harness.analysis._speedups", "The summary path's per-packet work in C.", -1, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    if (PyType_Ready(&ScannerType) < 0) return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (!module) return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(module, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
