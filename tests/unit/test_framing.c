/*
 * iop_frame_next(): the framing layer must cut the same messages out of a
 * stream however the stream was split into reads. The decoder loop below
 * is the one a connection runs: append what was read, then take complete
 * frames off the front until the framer wants more.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ioplex.h"
#include "stream/buf.h"

/* ---- a message list ----------------------------------------------------- */

#define MAX_MSGS 64

struct msgs {
    size_t n;
    size_t len[MAX_MSGS];
    char *data[MAX_MSGS];
};

static void msgs_add(struct msgs *m, const char *p, size_t len)
{
    assert_true(m->n < MAX_MSGS);
    m->data[m->n] = malloc(len ? len : 1);
    assert_non_null(m->data[m->n]);
    if (len)
        memcpy(m->data[m->n], p, len);
    m->len[m->n] = len;
    m->n++;
}

static void msgs_clear(struct msgs *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->data[i]);
    m->n = 0;
}

static void msgs_assert_equal(const struct msgs *want, const struct msgs *got,
                              const char *how)
{
    if (want->n != got->n)
        fail_msg("%s: %zu messages, expected %zu", how, got->n, want->n);
    for (size_t i = 0; i < want->n; i++) {
        if (want->len[i] != got->len[i])
            fail_msg("%s: message %zu has %zu bytes, expected %zu", how, i,
                     got->len[i], want->len[i]);
        if (want->len[i] && memcmp(want->data[i], got->data[i], want->len[i]) != 0)
            fail_msg("%s: message %zu differs", how, i);
    }
}

/* ---- the decoder a connection runs -------------------------------------- */

struct decoder {
    enum iop_framing framing;
    size_t max;
    struct iop__buf in;
    struct msgs out;
    int err; /* first negative return of iop_frame_next, then no more input */
};

static void decoder_init(struct decoder *d, enum iop_framing framing, size_t max)
{
    memset(d, 0, sizeof *d);
    d->framing = framing;
    d->max = max;
}

static void decoder_feed(struct decoder *d, const char *p, size_t n)
{
    if (d->err)
        return; /* a connection closes on a framing error */
    assert_int_equal(iop__buf_append(&d->in, p, n), 0);
    while (iop__buf_used(&d->in) > 0) {
        struct iop_frame f;
        size_t used = iop__buf_used(&d->in);
        int r = iop_frame_next(d->framing, d->max, iop__buf_head(&d->in), used, &f);
        if (r < 0) {
            d->err = r;
            return;
        }
        if (r == 0)
            break;
        assert_int_equal(r, 1);
        /* The frame must lie inside the input and make progress. */
        assert_true(f.frame_len > 0);
        assert_true(f.frame_len <= used);
        assert_true(f.payload_off + f.payload_len <= f.frame_len);
        assert_true(f.payload_len <= d->max);
        msgs_add(&d->out, iop__buf_head(&d->in) + f.payload_off, f.payload_len);
        iop__buf_consume(&d->in, f.frame_len);
    }
}

static void decoder_free(struct decoder *d)
{
    iop__buf_free(&d->in);
    msgs_clear(&d->out);
}

/* ---- splitting ---------------------------------------------------------- */

/* Small deterministic PRNG so failures reproduce. */
static uint64_t rng_state;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Feed `stream` cut at the offsets cuts[0..ncuts) (ascending), and check the
 * decoder produced `want` and ended with error `want_err` (0 or -EMSGSIZE)
 * and, without an error, `want_left` bytes still waiting for more. */
static void decode_with_cuts(enum iop_framing framing, size_t max,
                             const char *stream, size_t len,
                             const size_t *cuts, size_t ncuts,
                             const struct msgs *want, int want_err,
                             size_t want_left, const char *how)
{
    struct decoder d;
    decoder_init(&d, framing, max);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        assert_true(end >= at && end <= len);
        decoder_feed(&d, stream + at, end - at);
        at = end;
    }
    msgs_assert_equal(want, &d.out, how);
    if (d.err != want_err)
        fail_msg("%s: error %d, expected %d", how, d.err, want_err);
    if (!want_err && iop__buf_used(&d.in) != want_left)
        fail_msg("%s: %zu bytes left undecoded, expected %zu", how,
                 iop__buf_used(&d.in), want_left);
    decoder_free(&d);
}

/* Every split the brief asks for: one byte at a time, every two-way split,
 * and a few hundred seeded random splits (some with empty reads). */
static void check_every_split(enum iop_framing framing, size_t max,
                              const char *stream, size_t len,
                              const struct msgs *want, int want_err,
                              size_t want_left)
{
    char how[96];
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    assert_non_null(cuts);

    /* Whole stream in one read. */
    decode_with_cuts(framing, max, stream, len, NULL, 0, want, want_err, want_left,
                     "one read");

    /* 1-byte reads. */
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    decode_with_cuts(framing, max, stream, len, cuts, len, want, want_err,
                     want_left, "1-byte reads");

    /* Every 2-way split. */
    for (size_t k = 0; k <= len; k++) {
        snprintf(how, sizeof how, "split at %zu", k);
        decode_with_cuts(framing, max, stream, len, &k, 1, want, want_err,
                         want_left, how);
    }

    /* Seeded random splits. */
    rng_state = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 300; round++) {
        size_t n = 0, at = 0;
        size_t span = 1 + rng() % 24; /* from tiny reads to larger ones */
        while (at < len) {
            at += rng() % (span + 1); /* a step of 0 is an empty read */
            if (at > len)
                at = len;
            cuts[n++] = at;
            if (n == len)
                break;
        }
        snprintf(how, sizeof how, "random split %d", round);
        decode_with_cuts(framing, max, stream, len, cuts, n, want, want_err,
                         want_left, how);
    }
    free(cuts);
}

/* A growable byte string for building streams. */
struct bytes {
    char *p;
    size_t len, cap;
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* ---- LINE: the split property ------------------------------------------- */

#define LINE_MAX_TEST 16

struct line_case {
    const char *payload;
    int crlf; /* end with "\r\n" rather than "\n" */
};

static const struct line_case line_stream[] = {
    {"hello", 0},
    {"", 0},                  /* empty line */
    {"", 1},                  /* empty line, CRLF */
    {"0123456789abcdef", 0},  /* exactly max bytes */
    {"0123456789ABCDEF", 1},  /* exactly max bytes, then "\r\n" */
    {"a\rb", 0},              /* a lone "\r" is data */
    {"\rstart", 1},
    {"end\r", 1},             /* "end\r\r\n": only the last "\r" goes */
    {"\r", 1},
    {"x", 1},
    {"0123456789abcde\r", 1}, /* max bytes ending in "\r", then "\r\n" */
    {"tab\there", 0},
    {"last", 0},
};

static void build_line_stream(struct bytes *s, struct msgs *want)
{
    for (size_t i = 0; i < sizeof line_stream / sizeof line_stream[0]; i++) {
        const struct line_case *c = &line_stream[i];
        size_t n = strlen(c->payload);
        assert_true(n <= LINE_MAX_TEST);
        bytes_add(s, c->payload, n);
        bytes_add(s, c->crlf ? "\r\n" : "\n", c->crlf ? 2 : 1);
        msgs_add(want, c->payload, n);
    }
}

static void test_line_every_split(void **state)
{
    (void)state;
    struct bytes s = {0};
    struct msgs want = {0};
    build_line_stream(&s, &want);
    check_every_split(IOP_FRAMING_LINE, LINE_MAX_TEST, s.p, s.len, &want, 0, 0);
    msgs_clear(&want);
    free(s.p);
}

/* A too-long line ends the stream with -EMSGSIZE however it was split,
 * after delivering every message before it. */
static void test_line_every_split_oversize(void **state)
{
    (void)state;
    struct bytes s = {0};
    struct msgs want = {0};
    build_line_stream(&s, &want);
    /* max+1 bytes, then "\n"; more lines after it must not be delivered. */
    bytes_add(&s, "0123456789abcdefX\nafter\n", 24);
    check_every_split(IOP_FRAMING_LINE, LINE_MAX_TEST, s.p, s.len, &want, -EMSGSIZE, 0);

    /* The same with a long line that has no "\n" at all. */
    free(s.p);
    memset(&s, 0, sizeof s);
    msgs_clear(&want);
    build_line_stream(&s, &want);
    bytes_add(&s, "0123456789abcdef\r", 17); /* max+1 bytes: still undecided */
    check_every_split(IOP_FRAMING_LINE, LINE_MAX_TEST, s.p, s.len, &want, 0, 17);
    bytes_add(&s, "Z", 1); /* max+2 without "\n": too long */
    check_every_split(IOP_FRAMING_LINE, LINE_MAX_TEST, s.p, s.len, &want, -EMSGSIZE, 0);
    msgs_clear(&want);
    free(s.p);
}

/* ---- LEN32: the split property ------------------------------------------ */

#define LEN32_MAX_TEST 300

static void add_len32(struct bytes *s, struct msgs *want, const char *p, size_t n)
{
    char hdr[4];
    assert_int_equal(iop_frame_header(IOP_FRAMING_LEN32, n, hdr), 4);
    bytes_add(s, hdr, 4);
    bytes_add(s, p, n);
    if (want)
        msgs_add(want, p, n);
}

static void build_len32_stream(struct bytes *s, struct msgs *want)
{
    char big[LEN32_MAX_TEST];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7 + 3);
    static const char binary[] = {'a', '\0', '\n', '\r', '\0', (char)0xff, '\n', 'z'};

    add_len32(s, want, "", 0);                  /* empty */
    add_len32(s, want, "hi", 2);
    add_len32(s, want, binary, sizeof binary);   /* NUL and "\n" are data */
    add_len32(s, want, "", 0);
    add_len32(s, want, big, LEN32_MAX_TEST);     /* exactly max */
    add_len32(s, want, "\n", 1);
    add_len32(s, want, big + 1, 256);            /* header 00 00 01 00 */
    add_len32(s, want, "\0\0\0\0", 4);           /* looks like a header */
    add_len32(s, want, big + 2, 258);            /* header 00 00 01 02 */
    add_len32(s, want, "", 0);
}

static void test_len32_every_split(void **state)
{
    (void)state;
    struct bytes s = {0};
    struct msgs want = {0};
    build_len32_stream(&s, &want);
    check_every_split(IOP_FRAMING_LEN32, LEN32_MAX_TEST, s.p, s.len, &want, 0, 0);
    msgs_clear(&want);
    free(s.p);
}

static void test_len32_every_split_oversize(void **state)
{
    (void)state;
    struct bytes s = {0};
    struct msgs want = {0};
    build_len32_stream(&s, &want);
    /* A header announcing max+1 bytes, with only part of its payload sent:
     * the error must come from the header alone. */
    static const char hdr[4] = {0, 0, (char)((LEN32_MAX_TEST + 1) >> 8),
                                (char)((LEN32_MAX_TEST + 1) & 0xff)};
    bytes_add(&s, hdr, 4);
    bytes_add(&s, "partial", 7);
    check_every_split(IOP_FRAMING_LEN32, LEN32_MAX_TEST, s.p, s.len, &want, -EMSGSIZE, 0);
    msgs_clear(&want);
    free(s.p);
}

/* ---- RAW: every read is one message, at most max bytes ------------------ */

static void test_raw_decoder(void **state)
{
    (void)state;
    char data[100];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i ^ 0x5a);
    data[10] = '\n';
    data[11] = '\0';
    const size_t max = 32;
    /* One read of 100 bytes gives ceil(100/32) messages, in order. */
    struct decoder d;
    decoder_init(&d, IOP_FRAMING_RAW, max);
    decoder_feed(&d, data, sizeof data);
    assert_int_equal(d.err, 0);
    assert_int_equal(d.out.n, 4);
    size_t at = 0;
    for (size_t i = 0; i < d.out.n; i++) {
        size_t want = sizeof data - at < max ? sizeof data - at : max;
        assert_int_equal(d.out.len[i], want);
        assert_memory_equal(d.out.data[i], data + at, want);
        at += want;
    }
    assert_int_equal(at, sizeof data);
    assert_int_equal(iop__buf_used(&d.in), 0);
    /* Small reads: each is one message of exactly what was read. */
    msgs_clear(&d.out);
    decoder_feed(&d, data, 5);
    decoder_feed(&d, data + 5, 0);
    decoder_feed(&d, data + 5, 1);
    assert_int_equal(d.out.n, 2);
    assert_int_equal(d.out.len[0], 5);
    assert_int_equal(d.out.len[1], 1);
    assert_memory_equal(d.out.data[1], data + 5, 1);
    decoder_free(&d);
}

static void test_raw_direct(void **state)
{
    (void)state;
    struct iop_frame f;
    const char *s = "abcdef";
    assert_int_equal(iop_frame_next(IOP_FRAMING_RAW, 100, s, 0, &f), 0);
    assert_int_equal(iop_frame_next(IOP_FRAMING_RAW, 100, s, 6, &f), 1);
    assert_int_equal(f.payload_off, 0);
    assert_int_equal(f.payload_len, 6);
    assert_int_equal(f.frame_len, 6);
    assert_int_equal(iop_frame_next(IOP_FRAMING_RAW, 4, s, 6, &f), 1);
    assert_int_equal(f.payload_off, 0);
    assert_int_equal(f.payload_len, 4);
    assert_int_equal(f.frame_len, 4);
    assert_int_equal(iop_frame_next(IOP_FRAMING_RAW, 6, s, 6, &f), 1);
    assert_int_equal(f.payload_len, 6);
    /* A "\n" means nothing to raw framing. */
    assert_int_equal(iop_frame_next(IOP_FRAMING_RAW, 100, "a\nb", 3, &f), 1);
    assert_int_equal(f.payload_len, 3);
}

/* ---- LINE: direct cases ------------------------------------------------- */

static void expect_line(size_t max, const char *data, size_t len, size_t payload_len,
                        size_t frame_len)
{
    struct iop_frame f;
    memset(&f, 0xab, sizeof f);
    int r = iop_frame_next(IOP_FRAMING_LINE, max, data, len, &f);
    if (r != 1)
        fail_msg("line \"%.*s\" (max %zu): returned %d, expected 1", (int)len, data,
                 max, r);
    assert_int_equal(f.payload_off, 0);
    assert_int_equal(f.payload_len, payload_len);
    assert_int_equal(f.frame_len, frame_len);
}

static void test_line_cr(void **state)
{
    (void)state;
    expect_line(100, "abc\r\n", 5, 3, 5);      /* "\r" before "\n" dropped */
    expect_line(100, "abc\n", 4, 3, 4);
    expect_line(100, "a\rb\n", 4, 3, 4);       /* lone "\r" kept */
    expect_line(100, "\rab\n", 4, 3, 4);
    expect_line(100, "ab\r\r\n", 5, 3, 5);     /* only one "\r" dropped */
    expect_line(100, "\r\n", 2, 0, 2);
    expect_line(100, "\n", 1, 0, 1);
    expect_line(100, "\nrest", 5, 0, 1);       /* first line only */
    expect_line(100, "ab\ncd\n", 6, 2, 3);
    /* A "\r" at the end of the buffer, "\n" not yet here: wait. */
    struct iop_frame f;
    assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, 100, "ab\r", 3, &f), 0);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, 100, "", 0, &f), 0);
}

static void test_line_max(void **state)
{
    (void)state;
    struct iop_frame f;
    char buf[64];
    for (size_t max = 0; max <= 20; max++) {
        memset(buf, 'x', sizeof buf);
        /* max bytes then "\n" */
        buf[max] = '\n';
        expect_line(max, buf, max + 1, max, max + 1);
        /* max bytes then "\r\n" */
        memset(buf, 'x', sizeof buf);
        buf[max] = '\r';
        buf[max + 1] = '\n';
        expect_line(max, buf, max + 2, max, max + 2);
        /* max+1 bytes then "\n", and then "\r\n" */
        memset(buf, 'x', sizeof buf);
        buf[max + 1] = '\n';
        assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, max, buf, max + 2, &f),
                         -EMSGSIZE);
        memset(buf, 'x', sizeof buf);
        buf[max + 1] = '\r';
        buf[max + 2] = '\n';
        assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, max, buf, max + 3, &f),
                         -EMSGSIZE);
    }
}

/* No "\n": undecided while a payload of max bytes plus "\r\n" could still
 * fit (fewer than max+2 bytes), too long from max+2 bytes on. */
static void test_line_no_newline_threshold(void **state)
{
    (void)state;
    struct iop_frame f;
    char buf[64];
    memset(buf, 'y', sizeof buf);
    for (size_t max = 0; max <= 20; max++) {
        for (size_t len = 0; len < max + 2; len++)
            if (iop_frame_next(IOP_FRAMING_LINE, max, buf, len, &f) != 0)
                fail_msg("max %zu, %zu bytes without newline: expected 0", max, len);
        for (size_t len = max + 2; len <= max + 6 && len <= sizeof buf; len++)
            if (iop_frame_next(IOP_FRAMING_LINE, max, buf, len, &f) != -EMSGSIZE)
                fail_msg("max %zu, %zu bytes without newline: expected -EMSGSIZE",
                         max, len);
    }
    /* Ending in "\r" changes nothing: max+1 bytes still wait, max+2 fail. */
    memset(buf, 'y', sizeof buf);
    buf[10] = '\r';
    assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, 10, buf, 11, &f), 0);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, 10, buf, 12, &f), -EMSGSIZE);
    /* A "\n" beyond the max+2 window does not rescue a long line. */
    memset(buf, 'y', sizeof buf);
    buf[30] = '\n';
    assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, 10, buf, 31, &f), -EMSGSIZE);
}

static void test_line_max_near_size_max(void **state)
{
    (void)state;
    struct iop_frame f;
    const size_t maxes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 2, SIZE_MAX - 3};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        /* max+2 must not wrap to 0 or 1, which would call this too long. */
        assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, maxes[i], "abc", 3, &f), 0);
        assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, maxes[i], "", 0, &f), 0);
        assert_int_equal(iop_frame_next(IOP_FRAMING_LINE, maxes[i], "a", 1, &f), 0);
        expect_line(maxes[i], "abc\r\n", 5, 3, 5);
        expect_line(maxes[i], "\n", 1, 0, 1);
    }
}

/* ---- LEN32: direct cases ------------------------------------------------ */

static void test_len32_short_header(void **state)
{
    (void)state;
    struct iop_frame f;
    static const char hdr[4] = {0, 0, 0, 0};
    for (size_t len = 0; len < 4; len++)
        assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 100, hdr, len, &f), 0);
    /* Even a header that will announce a huge frame is not judged early. */
    static const char big[4] = {(char)0xff, (char)0xff, (char)0xff, (char)0xff};
    for (size_t len = 0; len < 4; len++)
        assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 100, big, len, &f), 0);
}

static void test_len32_zero_length(void **state)
{
    (void)state;
    struct iop_frame f;
    static const char z[6] = {0, 0, 0, 0, 'n', 'x'};
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 100, z, 4, &f), 1);
    assert_int_equal(f.payload_off, 4);
    assert_int_equal(f.payload_len, 0);
    assert_int_equal(f.frame_len, 4);
    /* Trailing bytes of the next frame are left alone. */
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 100, z, 6, &f), 1);
    assert_int_equal(f.frame_len, 4);
    /* Max 0 still admits empty frames. */
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 0, z, 4, &f), 1);
    assert_int_equal(f.payload_len, 0);
}

static void test_len32_big_endian(void **state)
{
    (void)state;
    struct iop_frame f;
    char buf[4 + 258 + 3];
    memset(buf, 'p', sizeof buf);
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = 1;
    buf[3] = 2; /* 258, not 0x02010000 */
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 1000, buf, 4 + 257, &f), 0);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 1000, buf, 4 + 258, &f), 1);
    assert_int_equal(f.payload_off, 4);
    assert_int_equal(f.payload_len, 258);
    assert_int_equal(f.frame_len, 262);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 1000, buf, sizeof buf, &f), 1);
    assert_int_equal(f.frame_len, 262);
    /* Max 257 rejects it, max 258 takes it: the decoded value is exact. */
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 257, buf, 4, &f), -EMSGSIZE);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 258, buf, 4, &f), 0);
    /* High bit set: unsigned, no sign extension. */
    static const char hi[4] = {(char)0x80, 0, 0, 0};
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 0x80000000u, hi, 4, &f), 0);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 0x7fffffffu, hi, 4, &f),
                     -EMSGSIZE);
    static const char ff[4] = {(char)0xff, (char)0xff, (char)0xff, (char)0xff};
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, UINT32_MAX, ff, 4, &f), 0);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, SIZE_MAX, ff, 4, &f), 0);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, UINT32_MAX - 1, ff, 4, &f),
                     -EMSGSIZE);
}

static void test_len32_oversize_before_payload(void **state)
{
    (void)state;
    struct iop_frame f;
    static const char hdr[8] = {0, 0, 0, 101, 'a', 'b', 'c', 'd'};
    /* As soon as the header is complete, not when 101 bytes have come. */
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 100, hdr, 4, &f), -EMSGSIZE);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 100, hdr, 8, &f), -EMSGSIZE);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 101, hdr, 4, &f), 0);
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 101, hdr, 8, &f), 0);
}

static void test_len32_payload_bytes(void **state)
{
    (void)state;
    struct iop_frame f;
    static const char fr[] = {0, 0, 0, 5, 'a', '\0', '\n', '\r', 'b', 'X'};
    assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 5, fr, sizeof fr, &f), 1);
    assert_int_equal(f.payload_off, 4);
    assert_int_equal(f.payload_len, 5);
    assert_int_equal(f.frame_len, 9);
    assert_memory_equal(fr + f.payload_off, "a\0\n\rb", 5);
}

static void test_unknown_framing(void **state)
{
    (void)state;
    struct iop_frame f;
    assert_int_equal(iop_frame_next((enum iop_framing)99, 10, "a\n", 2, &f), -EINVAL);
}

/* ---- headers and names -------------------------------------------------- */

static void test_frame_header(void **state)
{
    (void)state;
    char hdr[4];
    assert_int_equal(iop_frame_header(IOP_FRAMING_LEN32, 258, hdr), 4);
    assert_memory_equal(hdr, "\x00\x00\x01\x02", 4);
    assert_int_equal(iop_frame_header(IOP_FRAMING_LEN32, 0, hdr), 4);
    assert_memory_equal(hdr, "\x00\x00\x00\x00", 4);
    assert_int_equal(iop_frame_header(IOP_FRAMING_LEN32, 0x01020304, hdr), 4);
    assert_memory_equal(hdr, "\x01\x02\x03\x04", 4);
    assert_int_equal(iop_frame_header(IOP_FRAMING_LEN32, 0xfffefdfcu, hdr), 4);
    assert_memory_equal(hdr, "\xff\xfe\xfd\xfc", 4);

    /* Raw and line add no header and leave hdr alone. */
    memset(hdr, '#', sizeof hdr);
    assert_int_equal(iop_frame_header(IOP_FRAMING_RAW, 258, hdr), 0);
    assert_int_equal(iop_frame_header(IOP_FRAMING_LINE, 258, hdr), 0);
    assert_memory_equal(hdr, "####", 4);
}

static void test_frame_header_round_trip(void **state)
{
    (void)state;
    /* Small lengths: a whole frame decodes to the same payload. */
    char frame[4 + 600];
    for (size_t n = 0; n <= 600; n += (n < 20 ? 1 : 37)) {
        assert_int_equal(iop_frame_header(IOP_FRAMING_LEN32, n, frame), 4);
        for (size_t i = 0; i < n; i++)
            frame[4 + i] = (char)(i * 13);
        struct iop_frame f;
        assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, 600, frame, 4 + n, &f), 1);
        assert_int_equal(f.payload_off, 4);
        assert_int_equal(f.payload_len, n);
        assert_int_equal(f.frame_len, 4 + n);
    }
    /* Large lengths, header only: max n-1 rejects, max n waits, so the
     * decoded length is exactly n. */
    const uint32_t big[] = {1, 255, 256, 65535, 65536, 0x00ffffffu, 0x01000000u,
                            0x7fffffffu, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        char hdr[4];
        struct iop_frame f;
        assert_int_equal(iop_frame_header(IOP_FRAMING_LEN32, big[i], hdr), 4);
        assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, big[i], hdr, 4, &f), 0);
        assert_int_equal(iop_frame_next(IOP_FRAMING_LEN32, (size_t)big[i] - 1, hdr, 4, &f),
                         -EMSGSIZE);
    }
}

static void test_framing_names(void **state)
{
    (void)state;
    const struct {
        enum iop_framing f;
        const char *name;
    } all[] = {
        {IOP_FRAMING_RAW, "raw"},
        {IOP_FRAMING_LINE, "line"},
        {IOP_FRAMING_LEN32, "len32"},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_string_equal(iop_framing_name(all[i].f), all[i].name);
        enum iop_framing out = (enum iop_framing)77;
        assert_int_equal(iop_framing_parse(all[i].name, &out), 0);
        assert_int_equal(out, all[i].f);
    }
    assert_string_equal(iop_framing_name((enum iop_framing)3), "?");
    assert_string_equal(iop_framing_name((enum iop_framing)1000), "?");

    const char *bad[] = {"bad", "", "lines", "len", "len32 ", " raw", "len64"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum iop_framing out = IOP_FRAMING_LINE;
        assert_int_equal(iop_framing_parse(bad[i], &out), -EINVAL);
        assert_int_equal(out, IOP_FRAMING_LINE); /* untouched on failure */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_every_split),
        cmocka_unit_test(test_line_every_split_oversize),
        cmocka_unit_test(test_len32_every_split),
        cmocka_unit_test(test_len32_every_split_oversize),
        cmocka_unit_test(test_raw_decoder),
        cmocka_unit_test(test_raw_direct),
        cmocka_unit_test(test_line_cr),
        cmocka_unit_test(test_line_max),
        cmocka_unit_test(test_line_no_newline_threshold),
        cmocka_unit_test(test_line_max_near_size_max),
        cmocka_unit_test(test_len32_short_header),
        cmocka_unit_test(test_len32_zero_length),
        cmocka_unit_test(test_len32_big_endian),
        cmocka_unit_test(test_len32_oversize_before_payload),
        cmocka_unit_test(test_len32_payload_bytes),
        cmocka_unit_test(test_unknown_framing),
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_frame_header_round_trip),
        cmocka_unit_test(test_framing_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
