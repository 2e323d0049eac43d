/* harness.analysis._speedups: the summary path's per-packet work in C.
 *
 * A line-by-line translation of the pure analysis, which stays the specification (every rule is
 * stated and explained there; change it there first): harness/analysis/tracker.py's
 * ConversationTracker, harness/analysis/zeek.py's ZeekState and harness/analysis/tshark.py's
 * TsharkState, with harness/wire/decode.py's fast path (untagged Ethernet, IPv4 without options,
 * TCP). tests/unit/test_speedups.py holds it to them, conversation by conversation, on every
 * reference capture and on thousands of random conversations.
 *
 * The interface, which harness/analysis/pipeline.py owns:
 *
 * Scanner(limits, on_finished)
 *   limits: a dict of the analysis's constants, from the Python modules that define them (nothing
 *       is copied here): close_delay, tcp_idle_timeout, udp_idle_timeout, sweep_interval (ns),
 *       max_holes, fast_retransmission_window, default_out_of_order_threshold (ns), history_counts.
 *   on_finished(facts) gets each ended conversation as the dict of facts its summary record is
 *       made of (harness.analysis.summary.FACTS; summary.facts() makes the same from a Python
 *       Conversation), in the order the tracker ends them.
 *   .feed_records(records, decode_slow): records is an iterable of wire.reader.Record; those the fast
 *       path cannot take go to decode_slow(record, frame), which returns a Packet or None (it
 *       warns, skips and ties ICMP errors to conversations itself).
 *   .pcap_records(...), .pcapng_packets(...): the reader's bulk protocol (wire.reader.BulkConsumer):
 *       whole, sane records taken straight from the reader's buffer, inside feed_records.
 *   .feed_unreachable(quote, frame, time_ns): as ConversationTracker.feed_unreachable.
 *   .finish(): every conversation still open ends, in order of first packet.
 *   .packets: the TCP and UDP packets fed; .frames: every record read.
 *
 * Times are int64 nanoseconds since the epoch, as the reader guarantees (it refuses a timestamp
 * outside 1677-2262 as damage); a block whose time would not fit is left to the reader, which says so.
 * Sequence numbers follow Python's arithmetic: values that Python leaves unreduced (a SYN's first
 * byte, seq + 1) are kept in int64 unreduced too. Only CPython's public API is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

typedef int64_t nstime;      /* nanoseconds since the epoch */

#define TCP 6
#define UDP 17
#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define ACK 0x10

#define SEQ_MODULO ((int64_t)1 << 32)
#define HALF_SEQ_SPACE ((int64_t)1 << 31)
#define SECOND ((nstime)1000000000)    /* the unit, not a tunable: pcap timestamps are seconds + ticks */
#define MAX_HISTORY_COUNTS 16

/* The analysis's constants, as Scanner() is given them from the Python modules that define them. */
typedef struct {
    nstime close_delay, tcp_idle_timeout, udp_idle_timeout, shortest_timeout, sweep_interval;
    nstime fast_retransmission_window, default_out_of_order_threshold;
    Py_ssize_t max_holes;
    int64_t history_counts[MAX_HISTORY_COUNTS];   /* the occurrences on which T and W are recorded */
    int nhistory_counts;
} Limits;

enum { INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET, STATE_COUNT };

/* History letters a side records once (A, D, I, Q) or by sequence number (S, H, F, R). */
static const char RECORDED_LETTERS[] = "ADIQSHFR";
#define LETTER_COUNT 8

static int64_t pymod(int64_t value) {          /* value % SEQ_MODULO, as Python computes it */
    int64_t r = value % SEQ_MODULO;
    return r < 0 ? r + SEQ_MODULO : r;
}

static int64_t seq_delta(int64_t a, int64_t b) {
    int64_t d = pymod(a - b);
    return d >= HALF_SEQ_SPACE ? d - SEQ_MODULO : d;
}

static int seq_after(int64_t a, int64_t b) {
    int64_t d = pymod(a - b);
    return 0 < d && d < HALF_SEQ_SPACE;
}

/* -- growable arrays ---------------------------------------------------------------------------- */

typedef struct { int64_t start, end; } Hole;

typedef struct {
    int is_orig, state, prev_state;
    int64_t packets;
    int has_seq;                      /* start_seq and highest_seq are set together */
    int64_t start_seq, highest_seq;
    int64_t rexmit_payloads, retransmissions, out_of_order, duplicate_acks, zero_windows;
    Hole *holes;
    Py_ssize_t nholes, holes_cap;
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
    uint32_t *payloads;
    Py_ssize_t npayloads, payloads_cap;
    /* _recorded: which letters, in the order first recorded, and the last sequence number of each */
    char recorded_order[LETTER_COUNT];
    int nrecorded;
    int recorded_has_seq[LETTER_COUNT];
    int64_t recorded_seq[LETTER_COUNT];
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
    unsigned char orig_addr[16], resp_addr[16];
    int orig_port, resp_port;
    PyObject *orig_host, *resp_host;   /* str, or NULL until needed */
    int began_mid_stream;
    nstime first_time, last_time;
    PyObject *unreachable;             /* list of (frame, time_ns), or NULL */
    int has_orig_isn;
    int64_t orig_isn;
    /* connection state */
    int flipped;
    char *history;
    Py_ssize_t history_len, history_cap;
    int has_initial_rtt, has_syn_time;
    nstime initial_rtt, syn_time;
    Side orig, resp;
} Conv;

typedef struct {
    PyObject_HEAD
    Limits limits;
    PyObject *on_finished;
    Conv **buckets;
    size_t nbuckets, count;
    Conv *first, *last;
    Py_ssize_t started;
    Py_ssize_t packets;
    Py_ssize_t frame;
    PyObject *decode_slow;             /* borrowed, while feed_records runs */
    nstime next_sweep;
    int sweep_armed;
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

/* -- zeek.py and tshark.py ------------------------------------------------------------------------------- */

static void set_state(Side *side, int state) { side->prev_state = side->state; side->state = state; }

static int history_append(Conv *c, const Side *side, char letter) {
    if (grow((void **)&c->history, &c->history_cap, c->history_len + 1, 1) < 0) return -1;
    c->history[c->history_len++] = side->is_orig ? letter : (char)(letter - 'A' + 'a');
    return 0;
}

static int letter_index(char letter) { return (int)(strchr(RECORDED_LETTERS, letter) - RECORDED_LETTERS); }

static int side_has_recorded(const Side *side, int index) {
    for (int i = 0; i < side->nrecorded; i++)
        if (side->recorded_order[i] == RECORDED_LETTERS[index]) return 1;
    return 0;
}

static int record_once(Conv *c, Side *side, char letter) {
    int index = letter_index(letter);
    if (side_has_recorded(side, index)) return 0;
    side->recorded_order[side->nrecorded++] = letter;
    side->recorded_has_seq[index] = 0;
    return history_append(c, side, letter);
}

static int record_sequenced(Conv *c, Side *side, char letter, int64_t seq) {
    int index = letter_index(letter);
    int seen = side_has_recorded(side, index);
    if (seen && side->recorded_has_seq[index] && side->recorded_seq[index] == seq) return 0;
    if (!seen) side->recorded_order[side->nrecorded++] = letter;
    side->recorded_has_seq[index] = 1;
    side->recorded_seq[index] = seq;
    return history_append(c, side, letter);
}

static int record_counted(Conv *c, Side *side, char letter, int64_t count) {
    for (int i = 0; i < c->limits->nhistory_counts; i++)
        if (count == c->limits->history_counts[i]) return history_append(c, side, letter);
    return 0;
}

static int fill_hole(Side *side, int64_t start, int64_t end) {
    for (Py_ssize_t i = 0; i < side->nholes; i++) {
        int64_t hole_start = side->holes[i].start, hole_end = side->holes[i].end;
        if (seq_delta(start, hole_start) >= 0 && seq_delta(hole_end, end) >= 0) {
            Hole pieces[2];
            int n = 0;
            if (start != hole_start) { pieces[n].start = hole_start; pieces[n].end = start; n++; }
            if (end != hole_end) { pieces[n].start = end; pieces[n].end = hole_end; n++; }
            if (grow((void **)&side->holes, &side->holes_cap, side->nholes + 1, sizeof(Hole)) < 0) return -1;
            memmove(&side->holes[i + n], &side->holes[i + 1], (size_t)(side->nholes - i - 1) * sizeof(Hole));
            for (int k = 0; k < n; k++) side->holes[i + k] = pieces[k];
            side->nholes += n - 1;
            return 1;
        }
    }
    return 0;
}

/* Returns 1 if the segment retransmitted payload, 0 if not, -1 on error. */
static int track_sequence(const Limits *limits, Side *side, int flags, int64_t seq, int64_t length) {
    if (flags & RST) return 0;
    int64_t first_byte = (flags & SYN) ? seq + 1 : seq;
    if (!side->has_seq || ((flags & SYN) && side->highest_seq == side->start_seq)) {
        side->has_seq = 1;
        side->start_seq = side->highest_seq = first_byte;
    }
    if (length == 0) return 0;
    if (grow((void **)&side->payloads, &side->payloads_cap, side->npayloads + 1, sizeof(uint32_t)) < 0) return -1;
    side->payloads[side->npayloads++] = (uint32_t)length;
    int64_t end = pymod(first_byte + length);
    if (seq_after(end, side->highest_seq)) {
        if (seq_after(first_byte, side->highest_seq)) {
            if (grow((void **)&side->holes, &side->holes_cap, side->nholes + 1, sizeof(Hole)) < 0) return -1;
            side->holes[side->nholes].start = side->highest_seq;
            side->holes[side->nholes].end = first_byte;
            side->nholes++;
            if (side->nholes > limits->max_holes) {
                memmove(side->holes, side->holes + (side->nholes - limits->max_holes),
                        (size_t)limits->max_holes * sizeof(Hole));
                side->nholes = limits->max_holes;
            }
        }
        side->highest_seq = end;
        return 0;
    }
    if (fill_hole(side, first_byte, end) < 0) return -1;
    side->rexmit_payloads++;
    return 1;
}

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

static void from_inactive(Conv *c, Side *side, Side *peer, int flags, int64_t length) {
    if (flags & SYN) {
        if (side->is_orig) {
            set_state(side, (flags & ACK) ? SYN_ACK_SENT : SYN_SENT);
        } else {
            if (peer->state == SYN_SENT) set_state(peer, ESTABLISHED);
            set_state(side, ESTABLISHED);
        }
    }
    if (flags & FIN) set_state(side, CLOSED);
    if (flags & RST) set_state(side, RESET);
    if (side->state != INACTIVE) return;
    if (!side->is_orig && length == 0 && c->orig.state == SYN_SENT) return;
    if ((flags & ACK) && peer->state == ESTABLISHED) set_state(side, ESTABLISHED);
    else set_state(side, PARTIAL);
}

static void update_state(Conv *c, Side *side, Side *peer, int flags, int64_t length) {
    int state = side->state;
    if (state == INACTIVE) {
        from_inactive(c, side, peer, flags, length);
    } else if (state == SYN_SENT || state == SYN_ACK_SENT) {
        if (flags & FIN) set_state(side, CLOSED);
        if (flags & RST) set_state(side, RESET);
    } else if (state == ESTABLISHED || state == PARTIAL) {
        if ((flags & FIN) && !(flags & RST)) {
            set_state(side, CLOSED);
            if (peer->state == RESET && peer->prev_state == CLOSED) set_state(peer, CLOSED);
        }
        if (flags & RST) set_state(side, RESET);
    } else if (state == CLOSED) {
        if ((flags & RST) && peer->state != CLOSED) set_state(side, RESET);
    }
}

static int update_history(Conv *c, Side *side, Side *peer, int flags, int64_t seq, int64_t length,
                          int64_t window, int retransmitted) {
    int failed = 0;
    if (flags & (SYN | FIN | RST)) {
        int control = ((flags & SYN) != 0) + ((flags & FIN) != 0) + ((flags & RST) != 0);
        if (control > 1) failed = record_once(c, side, ((flags & FIN) && (flags & RST)) ? 'I' : 'Q');
        else if (flags & SYN) failed = record_sequenced(c, side, (flags & ACK) ? 'H' : 'S', seq);
        else if (flags & FIN) failed = record_sequenced(c, side, 'F', pymod(seq + length));
        else failed = record_sequenced(c, side, 'R', seq);
    } else if (length) {
        failed = record_once(c, side, 'D');
    } else if (flags & ACK) {
        failed = record_once(c, side, 'A');
    }
    if (failed < 0) return -1;
    if (retransmitted && record_counted(c, side, 'T', side->rexmit_payloads) < 0) return -1;
    if (window == 0 && !(flags & RST) && peer->state != CLOSED && side->state != RESET) {
        side->zero_windows++;
        if (record_counted(c, side, 'W', side->zero_windows) < 0) return -1;
    }
    return 0;
}

static int state_feed(Conv *c, int outbound, int proto, int flags, int64_t seq, int64_t ack, int64_t window,
                      int64_t length, nstime now) {
    Side *side = outbound ? &c->orig : &c->resp;
    Side *peer = outbound ? &c->resp : &c->orig;
    side->packets++;
    if (proto != TCP) {
        if (grow((void **)&side->payloads, &side->payloads_cap, side->npayloads + 1, sizeof(uint32_t)) < 0)
            return -1;
        side->payloads[side->npayloads++] = (uint32_t)length;
        if (!side->has_seq) { side->has_seq = 1; side->start_seq = side->highest_seq = 0; }
        side->highest_seq += length;
        if (record_once(c, side, 'D') < 0) return -1;
        side->state = ESTABLISHED;
        return 0;
    }
    int retransmitted = 0;
    if (length || (flags & SYN) || !side->has_seq) {
        retransmitted = track_sequence(c->limits, side, flags, seq, length);
        if (retransmitted < 0) return -1;
    }
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
    if (update_history(c, side, peer, flags, seq, length, window, retransmitted) < 0) return -1;
    if ((flags & (FIN | RST)) || side->state == INACTIVE) update_state(c, side, peer, flags, length);
    return 0;
}

static int state_closed(const Conv *c) {
    return (c->orig.state == CLOSED && c->resp.state == CLOSED) || c->orig.state == RESET
        || c->resp.state == RESET;
}

/* -- conversation.py: the tracker --------------------------------------------------------------- */

static int conv_ended(const Conv *c, nstime now) {
    nstime idle = now - c->last_time;
    if (c->proto != TCP) return idle > c->limits->udp_idle_timeout;
    return idle > c->limits->tcp_idle_timeout || (idle > c->limits->close_delay && state_closed(c));
}

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

static void free_conv(Conv *c) {
    Py_XDECREF(c->orig_host);
    Py_XDECREF(c->resp_host);
    Py_XDECREF(c->unreachable);
    PyMem_Free(c->history);
    PyMem_Free(c->orig.holes);
    PyMem_Free(c->resp.holes);
    PyMem_Free(c->orig.payloads);
    PyMem_Free(c->resp.payloads);
    PyMem_Free(c);
}

static PyObject *host_string(const unsigned char *addr, int family_len) {
    char text[INET6_ADDRSTRLEN];
    if (!inet_ntop(family_len == 4 ? AF_INET : AF_INET6, addr, text, sizeof text))
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyUnicode_FromString(text);
}

/* -- zeek.py's verdict: conn_state, and the facts a summary record is made of ------------------- */

static int64_t payload_bytes(const Side *side) {
    if (!side->has_seq) return 0;
    int64_t bytes = seq_delta(side->highest_seq, side->start_seq);
    return bytes > 0 ? bytes : 0;
}

static int64_t missed_bytes(const Side *side) {
    int64_t missed = 0;
    for (Py_ssize_t i = 0; i < side->nholes; i++) missed += pymod(side->holes[i].end - side->holes[i].start);
    return missed;
}

/* history (flipped or not) matches ^?S[^HAFGIQ]*R.* */
static int rstos0_history(const Conv *c) {
    const char *letter = c->history, *end = c->history + c->history_len;
    if (letter == end || *letter++ != 'S') return 0;
    for (; letter < end; letter++) {
        if (*letter == 'R') return 1;
        if (strchr("HAFGIQ", *letter)) return 0;
    }
    return 0;
}

static const char *conn_state(const Conv *c) {
    int os = c->orig.state, rs = c->resp.state;
    if (c->proto != TCP) {
        if (os != INACTIVE) return rs != INACTIVE ? "SF" : "S0";
        return rs != INACTIVE ? "SHR" : "OTH";
    }
    int o_inactive = os == INACTIVE || os == PARTIAL, r_inactive = rs == INACTIVE || rs == PARTIAL;
    if (rs == RESET) {
        if (os == SYN_SENT || os == SYN_ACK_SENT
                || (os == RESET && payload_bytes(&c->orig) == 0 && payload_bytes(&c->resp) == 0))
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

/* The facts, keyed as harness.analysis.summary.FACTS names them. */
static PyObject *conv_facts(Conv *c) {
    if (!c->orig_host && !(c->orig_host = host_string(c->orig_addr, c->family_len))) return NULL;
    if (!c->resp_host && !(c->resp_host = host_string(c->resp_addr, c->family_len))) return NULL;
    PyObject *history = NULL;
    char *letters = PyMem_Malloc((size_t)c->history_len + 2);
    if (letters) {
        Py_ssize_t n = 0;
        if (c->flipped) letters[n++] = '^';
        if (c->history_len) memcpy(letters + n, c->history, (size_t)c->history_len);
        history = PyUnicode_FromStringAndSize(letters, n + c->history_len);
        PyMem_Free(letters);
    } else {
        PyErr_NoMemory();
    }
    PyObject *orig_payloads = payload_list(&c->orig), *resp_payloads = payload_list(&c->resp);
    PyObject *facts = NULL;
    if (history && orig_payloads && resp_payloads) {
        int tcp = c->proto == TCP;
        facts = Py_BuildValue(
            "{s:n,s:i,s:O,s:i,s:O,s:i,s:L,s:L,s:s,s:O,s:L,s:L,s:L,s:L,s:O,s:O,s:L,s:L,s:L,s:L,s:n}",
            "index", c->index, "proto", c->proto, "orig_h", c->orig_host, "orig_p", c->orig_port,
            "resp_h", c->resp_host, "resp_p", c->resp_port, "first_time_ns", (long long)c->first_time,
            "last_time_ns", (long long)c->last_time, "conn_state", conn_state(c), "history", history,
            "orig_pkts", (long long)c->orig.packets, "resp_pkts", (long long)c->resp.packets,
            "orig_bytes", (long long)payload_bytes(&c->orig), "resp_bytes", (long long)payload_bytes(&c->resp),
            "orig_payloads", orig_payloads, "resp_payloads", resp_payloads,
            "retransmissions", tcp ? (long long)(c->orig.retransmissions + c->resp.retransmissions) : 0LL,
            "out_of_order", tcp ? (long long)(c->orig.out_of_order + c->resp.out_of_order) : 0LL,
            "duplicate_acks", tcp ? (long long)(c->orig.duplicate_acks + c->resp.duplicate_acks) : 0LL,
            "missed_bytes", (long long)(missed_bytes(&c->orig) + missed_bytes(&c->resp)),
            "icmp_unreachable", c->unreachable ? PyList_GET_SIZE(c->unreachable) : (Py_ssize_t)0);
    }
    Py_XDECREF(history);
    Py_XDECREF(orig_payloads);
    Py_XDECREF(resp_payloads);
    return facts;
}

/* Ends a conversation: out of the table, then to on_finished. Frees it either way. */
static int end_conv(Scanner *s, Conv *c) {
    unlink_conv(s, c);
    PyObject *facts = conv_facts(c);
    free_conv(c);
    if (!facts) return -1;
    PyObject *result = PyObject_CallOneArg(s->on_finished, facts);
    Py_DECREF(facts);
    if (!result) return -1;
    Py_DECREF(result);
    return 0;
}

static int sweep(Scanner *s, nstime now) {
    s->next_sweep = now + s->limits.sweep_interval;
    Conv *c = s->first;
    while (c) {
        Conv *next = c->next;
        if (now - c->last_time > s->limits.shortest_timeout && conv_ended(c, now) && end_conv(s, c) < 0)
            return -1;
        c = next;
    }
    return 0;
}

typedef struct {
    nstime time;
    const unsigned char *src, *dst;
    int family_len, proto, sport, dport, flags;
    int64_t payload_len, seq, ack, window;
    PyObject *src_host, *dst_host;    /* borrowed str, or NULL (made from the address when needed) */
} PacketFields;

static int feed_packet(Scanner *s, const PacketFields *p) {
    Key key;
    make_key(&key, p->src, p->sport, p->dst, p->dport, p->family_len, p->proto);
    nstime now = p->time;
    Conv *c = lookup(s, &key);
    int is_open = p->proto == TCP && (p->flags & (SYN | ACK)) == SYN;
    if (c && ((now - c->last_time > s->limits.shortest_timeout && conv_ended(c, now))
              || (is_open && c->has_orig_isn && c->orig_isn != p->seq))) {
        if (end_conv(s, c) < 0) return -1;
        c = NULL;
    }
    if (!c) {
        c = PyMem_Calloc(1, sizeof(Conv));
        if (!c) { PyErr_NoMemory(); return -1; }
        memcpy(c->key_addr, key.addr, sizeof key.addr);
        c->key_port[0] = key.port[0];
        c->key_port[1] = key.port[1];
        c->family_len = key.family_len;
        c->proto = key.proto;
        c->hash = key.hash;
        c->limits = &s->limits;
        int swap = 0;
        if (p->proto == TCP && !is_open) {
            if (p->flags & SYN) { swap = 1; c->flipped = 1; }
            else c->began_mid_stream = 1;
        }
        memcpy(c->orig_addr, swap ? p->dst : p->src, (size_t)p->family_len);
        memcpy(c->resp_addr, swap ? p->src : p->dst, (size_t)p->family_len);
        c->orig_port = swap ? p->dport : p->sport;
        c->resp_port = swap ? p->sport : p->dport;
        c->orig_host = swap ? p->dst_host : p->src_host;
        c->resp_host = swap ? p->src_host : p->dst_host;
        Py_XINCREF(c->orig_host);
        Py_XINCREF(c->resp_host);
        c->index = ++s->started;
        c->first_time = now;
        c->orig.is_orig = 1;
        if (is_open) { c->has_orig_isn = 1; c->orig_isn = p->seq; }
        if (insert(s, c) < 0) { free_conv(c); return -1; }
    }
    int outbound = p->sport == c->orig_port && memcmp(p->src, c->orig_addr, (size_t)p->family_len) == 0;
    c->last_time = now;
    if (state_feed(c, outbound, p->proto, p->flags, p->seq, p->ack, p->window, p->payload_len, now) < 0) return -1;
    s->packets++;
    if (!s->sweep_armed || now >= s->next_sweep) {
        s->sweep_armed = 1;
        if (sweep(s, now) < 0) return -1;
    }
    return 0;
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
 * window, mss, wscale). */
static int feed_packet_tuple(Scanner *s, PyObject *packet) {
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
    if (PyErr_Occurred()) return -1;
    p.src_host = PyTuple_GET_ITEM(packet, 2);
    p.dst_host = PyTuple_GET_ITEM(packet, 3);
    return feed_packet(s, &p);
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
    if (linktype != 1 || caplen < 54 || origlen < caplen) return 0;
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
    if (packet && PyList_Check(packet)) {
        /* A record holding several packets (a tunnel's outer and inner ones): each, in order. */
        for (Py_ssize_t i = 0; !failed && i < PyList_GET_SIZE(packet); i++)
            failed = feed_packet_tuple(s, PyList_GET_ITEM(packet, i)) < 0;
    } else {
        failed = !packet || (packet != Py_None && feed_packet_tuple(s, packet) < 0);
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
            PyObject *item = c && c->unreachable ? PyTuple_Pack(2, frame, time) : NULL;
            if (!c || (item && PyList_Append(c->unreachable, item) == 0)) result = Py_None;
            Py_XDECREF(item);
        }
    }
    Py_XDECREF(src); Py_XDECREF(dst); Py_XDECREF(sport); Py_XDECREF(dport); Py_XDECREF(proto);
    Py_XINCREF(result);
    return result;
}

static PyObject *Scanner_finish(Scanner *s, PyObject *unused) {
    while (s->first)
        if (end_conv(s, s->first) < 0) return NULL;
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

static int Scanner_init(Scanner *s, PyObject *args, PyObject *kwargs) {
    PyObject *limits, *on_finished;
    if (!PyArg_ParseTuple(args, "O!O:Scanner", &PyDict_Type, &limits, &on_finished)) return -1;
    Limits *L = &s->limits;
    int64_t max_holes;
    if (limit_from(limits, "close_delay", &L->close_delay) < 0
            || limit_from(limits, "tcp_idle_timeout", &L->tcp_idle_timeout) < 0
            || limit_from(limits, "udp_idle_timeout", &L->udp_idle_timeout) < 0
            || limit_from(limits, "sweep_interval", &L->sweep_interval) < 0
            || limit_from(limits, "fast_retransmission_window", &L->fast_retransmission_window) < 0
            || limit_from(limits, "default_out_of_order_threshold", &L->default_out_of_order_threshold) < 0
            || limit_from(limits, "max_holes", &max_holes) < 0)
        return -1;
    L->max_holes = (Py_ssize_t)max_holes;
    L->shortest_timeout = L->close_delay;
    if (L->tcp_idle_timeout < L->shortest_timeout) L->shortest_timeout = L->tcp_idle_timeout;
    if (L->udp_idle_timeout < L->shortest_timeout) L->shortest_timeout = L->udp_idle_timeout;
    PyObject *counts = PyDict_GetItemString(limits, "history_counts");
    PyObject *sequence = counts ? PySequence_Fast(counts, "history_counts must be a sequence") : NULL;
    if (!sequence) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "Scanner limits lack history_counts");
        return -1;
    }
    Py_ssize_t ncounts = PySequence_Fast_GET_SIZE(sequence);
    if (ncounts > MAX_HISTORY_COUNTS || max_holes < 1) {
        Py_DECREF(sequence);
        PyErr_SetString(PyExc_ValueError, "Scanner limits out of range (history_counts, max_holes)");
        return -1;
    }
    L->nhistory_counts = (int)ncounts;
    for (Py_ssize_t i = 0; i < ncounts; i++) {
        L->history_counts[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(sequence, i));
        if (L->history_counts[i] == -1 && PyErr_Occurred()) { Py_DECREF(sequence); return -1; }
    }
    Py_DECREF(sequence);
    Py_INCREF(on_finished);
    Py_XSETREF(s->on_finished, on_finished);
    return 0;
}

static void Scanner_dealloc(Scanner *s) {
    while (s->first) {
        Conv *c = s->first;
        s->first = c->next;
        free_conv(c);
    }
    PyMem_Free(s->buckets);
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
