/*
 * A connection's input path (src/stream/conn.c): bytes arrive in random
 * reads and are cut into messages for the service, either the event
 * loops' way (iop__conn_dispatch_bytes over a scratch buffer, the tail
 * kept in c->in) or the blocking way (recv into c->in, iop__conn_dispatch).
 * Then the stream ends (iop__conn_eof).
 *
 * Properties, checked against one iop_frame_next() decode of the whole
 * input (fuzz_framing.c checks that decode itself):
 *  - line and len32: the service gets exactly those messages, in order,
 *    whatever the reads; raw: messages of at most max bytes whose
 *    concatenation is the input;
 *  - a frame over the limit ends dispatch with -EMSGSIZE exactly where the
 *    whole decode fails, with nothing delivered past it;
 *  - after the service calls iop_close() no message is delivered;
 *  - at the end of the stream a last line without "\n" is still a message
 *    (if it fits); a partial len32 frame is dropped;
 *  - echoing with iop_send_frame() queues exactly the messages framed
 *    again (read back with iop__outq_iov / iop__outq_consume).
 * With a built-in service instead of the recorder (echo, bytes, ack,
 * discard, daytime, chargen) only the sanitizers judge.
 *
 * Input: framing, max-frame, split seed, options, service, then the stream.
 */
#include "fuzz_util.h"
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#define MAX_MSGS 8192

/* ---- what the recorder saw ------------------------------------------- */

static struct {
    size_t n, close_after; /* close_after: 0 = never */
    int echo;
    size_t off[MAX_MSGS], len[MAX_MSGS]; /* in `log` */
    char *log;
    size_t log_len, log_cap;
} rec;

static void log_bytes(const void *p, size_t n)
{
    if (n == 0)
        return;
    if (rec.log_len + n > rec.log_cap) {
        size_t cap = (rec.log_len + n) * 2 + 64;
        rec.log = realloc(rec.log, cap);
        FUZZ_CHECK(rec.log);
        rec.log_cap = cap;
    }
    memcpy(rec.log + rec.log_len, p, n);
    rec.log_len += n;
}

static void rec_message(iop_conn *c, const char *msg, size_t len)
{
    FUZZ_CHECK(!(c->flags & IOP__CONN_CLOSING)); /* nothing after iop_close() */
    FUZZ_CHECK(len <= c->server->max_frame);
    FUZZ_CHECK(rec.n < MAX_MSGS);
    rec.off[rec.n] = rec.log_len;
    rec.len[rec.n] = len;
    rec.n++;
    log_bytes(msg, len);
    if (rec.echo)
        FUZZ_CHECK(iop_send_frame(c, msg, len) == 0);
    if (rec.close_after && rec.n == rec.close_after)
        iop_close(c);
}

static const struct iop_service recorder = {
    .name = "recorder",
    .on_message = rec_message,
};

/* ---- the expected messages: one decode of the whole input -------------- */

static struct {
    size_t n;
    size_t off[MAX_MSGS], len[MAX_MSGS];
    int err;
    size_t consumed;
} want;

static void decode_whole(enum iop_framing fr, size_t max, const char *data, size_t len)
{
    memset(&want, 0, sizeof want);
    size_t off = 0;
    while (want.n < MAX_MSGS) {
        struct iop_frame f;
        int r = iop_frame_next(fr, max, data + off, len - off, &f);
        if (r < 0)
            want.err = r;
        if (r <= 0)
            break;
        want.off[want.n] = off + f.payload_off;
        want.len[want.n] = f.payload_len;
        want.n++;
        off += f.frame_len;
    }
    want.consumed = off;
}

/* ---- the model's side -------------------------------------------------- */

static void discard_report(void *ctx, enum iop_log level, const char *line)
{
    (void)ctx;
    (void)level;
    FUZZ_CHECK(line && strlen(line) < 1024);
}

/* What the model would write: appended to `out` (if not NULL), dropped. */
static void take_output(iop_conn *c, char **out, size_t *out_len)
{
    struct iovec iov[16];
    while (c->out.bytes > 0) {
        int k = iop__outq_iov(&c->out, iov, 16);
        FUZZ_CHECK(k > 0);
        size_t n = 0;
        for (int i = 0; i < k; i++) {
            if (out && iov[i].iov_len > 0) {
                *out = realloc(*out, *out_len + iov[i].iov_len + 1);
                FUZZ_CHECK(*out);
                memcpy(*out + *out_len, iov[i].iov_base, iov[i].iov_len);
                *out_len += iov[i].iov_len;
            }
            n += iov[i].iov_len;
        }
        iop__outq_consume(&c->out, n);
    }
}

/* One read of n bytes, the event loops' or the blocking models' way. */
static int feed(iop_conn *c, int blocking, const char *p, size_t n)
{
    if (!blocking) {
        /* A scratch copy of exactly n bytes: ASan sees any read past it. */
        char *scratch = malloc(n);
        FUZZ_CHECK(scratch);
        memcpy(scratch, p, n);
        int r = iop__conn_dispatch_bytes(c, scratch, n);
        free(scratch);
        return r;
    }
    char *w = iop__buf_reserve(&c->in, n);
    FUZZ_CHECK(w);
    memcpy(w, p, n);
    iop__buf_commit(&c->in, n);
    return iop__conn_dispatch(c);
}

static iop_server srv;

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
    struct fuzz_in in = {bytes, size};
    enum iop_framing fr = (enum iop_framing)(fuzz_byte(&in) % 3);
    size_t max = fuzz_max_frame(&in);
    uint64_t seed = (uint64_t)fuzz_byte(&in) * 0x9E3779B97F4A7C15u + 1;
    uint8_t opts = fuzz_byte(&in);
    uint8_t which = fuzz_byte(&in);
    const char *data = (const char *)in.p;
    size_t len = in.n;

    int blocking = opts & 1;
    static const char *const builtin[] = {"echo", "bytes", "ack", "discard",
                                          "daytime", "chargen"};
    const struct iop_service *svc = &recorder;
    if (which >= 0xC0)
        svc = iop_service_find(builtin[which % (sizeof builtin / sizeof builtin[0])]);
    FUZZ_CHECK(svc);

    memset(&srv, 0, sizeof srv);
    iop_server_config_init(&srv.cfg);
    srv.cfg.report = discard_report;
    srv.cfg.report_debug = 1; /* every line is checked */
    srv.svc = svc;
    srv.framing = fr;
    srv.max_frame = max;
    memset(&rec, 0, sizeof rec);
    rec.log_cap = 64; /* never NULL: messages are compared at rec.log + off */
    rec.log = malloc(rec.log_cap);
    FUZZ_CHECK(rec.log);
    rec.echo = (opts >> 1) & 1;
    rec.close_after = (opts >> 2) & 7; /* 0: never; else after that many */
    decode_whole(fr, max, data, len);

    iop_conn c;
    iop__conn_init(&c, &srv, -1, NULL, 0);
    if (svc->on_open)
        svc->on_open(&c);
    char *out = NULL;
    size_t out_len = 0, have = 0;
    int err = 0, drains = 0;
    while (have < len && !err) {
        size_t n = fuzz_chunk(&seed, len - have);
        err = feed(&c, blocking, data + have, n);
        have += n;
        FUZZ_CHECK(err == 0 || err == -EMSGSIZE);
        take_output(&c, svc == &recorder ? &out : NULL, &out_len);
        /* The output drained: a producer (bytes, chargen) may add more;
         * a few times only, so a request for 64 MiB stays cheap. */
        if (svc->on_drain && !(c.flags & IOP__CONN_CLOSING) && drains++ < 2) {
            svc->on_drain(&c);
            take_output(&c, NULL, NULL);
        }
    }
    size_t before_eof = rec.n;
    if (!err)
        iop__conn_eof(&c);
    take_output(&c, svc == &recorder ? &out : NULL, &out_len);
    if (svc->on_close)
        svc->on_close(&c, err);
    iop__conn_release(&c);

    if (svc != &recorder) {
        free(out);
        free(rec.log);
        return 0;
    }
    if (want.n == MAX_MSGS || rec.n == MAX_MSGS) { /* beyond what is compared */
        free(out);
        free(rec.log);
        return 0;
    }

    /* The messages, against the whole decode. */
    size_t cut = rec.close_after && rec.close_after < want.n ? rec.close_after : want.n;
    if (fr == IOP_FRAMING_RAW) {
        /* Reads decide raw messages: check their bytes, in order. */
        FUZZ_CHECK(err == 0);
        size_t at = 0;
        for (size_t i = 0; i < rec.n; i++) {
            FUZZ_CHECK(rec.len[i] > 0 && rec.len[i] <= max);
            FUZZ_CHECK(memcmp(rec.log + rec.off[i], data + at, rec.len[i]) == 0);
            at += rec.len[i];
        }
        if (!rec.close_after || rec.n < rec.close_after)
            FUZZ_CHECK(at == len);
    } else {
        FUZZ_CHECK(before_eof == cut);
        for (size_t i = 0; i < cut; i++) {
            FUZZ_CHECK(rec.len[i] == want.len[i]);
            FUZZ_CHECK(memcmp(rec.log + rec.off[i], data + want.off[i], want.len[i]) == 0);
        }
        int closed = rec.close_after && rec.close_after <= want.n;
        /* The error, where the whole decode failed, unless closed before. */
        FUZZ_CHECK(err == (closed ? 0 : want.err));
        /* At the end of the stream: a last line without "\n". */
        size_t tail = len - want.consumed;
        int last = !closed && !want.err && fr == IOP_FRAMING_LINE && tail > 0 && tail <= max;
        FUZZ_CHECK(rec.n == before_eof + (last ? 1u : 0u));
        if (last) {
            FUZZ_CHECK(rec.len[before_eof] == tail);
            FUZZ_CHECK(memcmp(rec.log + rec.off[before_eof], data + want.consumed, tail) == 0);
        }
    }

    /* The echo: every message framed again, in order. */
    if (rec.echo) {
        size_t at = 0;
        for (size_t i = 0; i < rec.n; i++) {
            char hdr[4];
            size_t h = iop_frame_header(fr, rec.len[i], hdr);
            FUZZ_CHECK(at + h + rec.len[i] <= out_len);
            FUZZ_CHECK(memcmp(out + at, hdr, h) == 0);
            at += h;
            FUZZ_CHECK(memcmp(out + at, rec.log + rec.off[i], rec.len[i]) == 0);
            at += rec.len[i];
            if (fr == IOP_FRAMING_LINE) {
                FUZZ_CHECK(at < out_len && out[at] == '\n');
                at++;
            }
        }
        FUZZ_CHECK(at == out_len);
    } else {
        FUZZ_CHECK(out_len == 0);
    }
    free(out);
    free(rec.log);
    return 0;
}
