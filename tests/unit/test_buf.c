/*
 * The connection byte buffer (src/stream/buf.c): bytes live in
 * data[off, len); reserve makes room at the end (sliding or growing),
 * consume takes from the front.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "stream/buf.h"

static unsigned char pattern(size_t i) { return (unsigned char)(i * 31 + (i >> 8) + 7); }

static void fill(char *p, size_t start, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)pattern(start + i);
}

/* The unconsumed bytes are pattern[from, from+used). */
static void assert_holds(const struct iop__buf *b, size_t from, size_t used)
{
    assert_int_equal(iop__buf_used(b), used);
    assert_true(b->off <= b->len && b->len <= b->cap);
    const char *h = iop__buf_head(b);
    for (size_t i = 0; i < used; i++)
        if ((unsigned char)h[i] != pattern(from + i))
            fail_msg("byte %zu of %zu is %#x, expected %#x", i, used,
                     (unsigned char)h[i], pattern(from + i));
}

static void test_reserve_commit(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    char *p = iop__buf_reserve(&b, 100);
    assert_non_null(p);
    assert_true(b.cap >= 100);
    assert_ptr_equal(p, b.data);
    fill(p, 0, 40); /* a read that returned less than was reserved */
    iop__buf_commit(&b, 40);
    assert_holds(&b, 0, 40);
    /* The next write position follows the committed bytes. */
    p = iop__buf_reserve(&b, 10);
    assert_ptr_equal(p, iop__buf_head(&b) + 40);
    fill(p, 40, 10);
    iop__buf_commit(&b, 10);
    assert_holds(&b, 0, 50);
    iop__buf_free(&b);
}

/* Asking for no room is not an allocation failure, even on a buffer that
 * has no storage yet (iop_send_frame() asks for 0 bytes for an empty raw
 * message). */
static void test_reserve_zero(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    assert_non_null(iop__buf_reserve(&b, 0));
    iop__buf_free(&b);

    /* On a buffer that has storage it is the write position. */
    assert_int_equal(iop__buf_append(&b, "abc", 3), 0);
    assert_ptr_equal(iop__buf_reserve(&b, 0), b.data + 3);
    iop__buf_free(&b);
}

/* The user-visible consequence of the case above: queueing an empty raw
 * frame on a connection with nothing queued. */
static void test_send_frame_empty_raw(void **state)
{
    (void)state;
    iop_server s;
    memset(&s, 0, sizeof s);
    s.framing = IOP_FRAMING_RAW;
    s.max_frame = IOP_MAX_FRAME_DEFAULT;
    iop_conn c;
    memset(&c, 0, sizeof c);
    c.fd = -1;
    c.server = &s;
    assert_int_equal(iop_send_frame(&c, "", 0), 0);
    assert_int_equal(c.out.bytes, 0);
    /* With something queued already, the same call succeeds. */
    assert_int_equal(iop_send_frame(&c, "x", 1), 0);
    assert_int_equal(iop_send_frame(&c, "", 0), 0);
    assert_int_equal(c.out.bytes, 1);
    iop__conn_release(&c);
}

static void test_append_and_growth(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    char chunk[1000];
    size_t total = 0;
    size_t prev_cap = 0;
    int grew = 0;
    /* Odd sizes so growth happens in the middle of an append. */
    for (size_t step = 1; total < 50000; step = step * 3 % 997 + 1) {
        fill(chunk, total, step);
        assert_int_equal(iop__buf_append(&b, chunk, step), 0);
        total += step;
        if (b.cap != prev_cap) {
            grew++;
            prev_cap = b.cap;
        }
        assert_holds(&b, 0, total);
    }
    assert_true(grew >= 3); /* the loop really crossed several growths */
    assert_true(b.cap >= total);
    iop__buf_free(&b);
}

static void test_append_zero(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    assert_int_equal(iop__buf_append(&b, "", 0), 0);
    assert_int_equal(iop__buf_used(&b), 0);
    assert_int_equal(iop__buf_append(&b, "ab", 2), 0);
    assert_int_equal(iop__buf_append(&b, NULL, 0), 0);
    assert_int_equal(iop__buf_used(&b), 2);
    assert_memory_equal(iop__buf_head(&b), "ab", 2);
    iop__buf_free(&b);
}

/* Consumed space at the front is reused by moving the live bytes down,
 * without a new allocation, when that makes enough room. */
static void test_consume_then_slide(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    assert_non_null(iop__buf_reserve(&b, 1));
    size_t cap = b.cap;
    char *storage = b.data;
    char *tmp = malloc(cap);
    assert_non_null(tmp);
    fill(tmp, 0, cap);
    assert_int_equal(iop__buf_append(&b, tmp, cap), 0); /* exactly full */
    assert_int_equal(b.cap, cap);

    iop__buf_consume(&b, 100);
    assert_int_equal(b.off, 100);
    assert_holds(&b, 100, cap - 100);

    /* 100 bytes fit once the live bytes move to the front. */
    char *p = iop__buf_reserve(&b, 100);
    assert_non_null(p);
    assert_int_equal(b.cap, cap);
    assert_ptr_equal(b.data, storage);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, cap - 100);
    assert_ptr_equal(p, b.data + cap - 100);
    assert_holds(&b, 100, cap - 100);
    fill(p, cap, 100);
    iop__buf_commit(&b, 100);
    assert_holds(&b, 100, cap);

    /* Not enough even after sliding: grow, keeping the live bytes. */
    iop__buf_consume(&b, 10);
    p = iop__buf_reserve(&b, 11);
    assert_non_null(p);
    assert_true(b.cap > cap);
    assert_int_equal(b.off, 0);
    assert_holds(&b, 110, cap - 10);
    assert_ptr_equal(p, b.data + cap - 10);

    free(tmp);
    iop__buf_free(&b);
}

/* Room already at the end: no sliding, the offset stays. */
static void test_reserve_with_room_does_not_move(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    char tmp[300];
    fill(tmp, 0, sizeof tmp);
    assert_int_equal(iop__buf_append(&b, tmp, sizeof tmp), 0);
    iop__buf_consume(&b, 50);
    char *data = b.data;
    char *p = iop__buf_reserve(&b, 100);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.off, 50);
    assert_ptr_equal(p, b.data + 300);
    assert_holds(&b, 50, 250);
    iop__buf_free(&b);
}

static void test_consume_to_empty(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    assert_int_equal(iop__buf_append(&b, "hello world", 11), 0);
    size_t cap = b.cap;
    char *data = b.data;
    iop__buf_consume(&b, 5);
    assert_int_equal(b.off, 5);
    assert_int_equal(iop__buf_used(&b), 6);
    assert_memory_equal(iop__buf_head(&b), " world", 6);
    iop__buf_consume(&b, 6);
    /* Empty: back to the start, so the whole capacity is usable again. */
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(iop__buf_used(&b), 0);
    assert_int_equal(b.cap, cap);
    assert_ptr_equal(b.data, data);
    char *p = iop__buf_reserve(&b, cap);
    assert_ptr_equal(p, data); /* all of it, with no new allocation */
    assert_int_equal(b.cap, cap);
    /* Consuming nothing from an empty buffer changes nothing. */
    iop__buf_consume(&b, 0);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 0);
    iop__buf_free(&b);
}

static void test_free_releases(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    iop__buf_free(&b); /* freeing an unused buffer is harmless */
    assert_null(b.data);
    assert_int_equal(iop__buf_append(&b, "abc", 3), 0);
    iop__buf_consume(&b, 1);
    iop__buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    iop__buf_free(&b); /* and twice */
    /* Usable again after a free. */
    assert_int_equal(iop__buf_append(&b, "xyz", 3), 0);
    assert_memory_equal(iop__buf_head(&b), "xyz", 3);
    iop__buf_free(&b);
}

static void test_large_appends(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    const size_t big = (1u << 20) + 3;
    char *src = malloc(big);
    assert_non_null(src);
    fill(src, 0, big);
    assert_int_equal(iop__buf_append(&b, src, big), 0);
    assert_holds(&b, 0, big);
    /* A second large append on top, after consuming part of the first. */
    iop__buf_consume(&b, 12345);
    fill(src, big, big);
    assert_int_equal(iop__buf_append(&b, src, big), 0);
    assert_holds(&b, 12345, 2 * big - 12345);
    free(src);
    iop__buf_free(&b);
}

/* A request no allocation can satisfy fails cleanly and leaves the
 * buffer as it was. */
static void test_reserve_impossible(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    assert_int_equal(iop__buf_append(&b, "keep", 4), 0);
    struct iop__buf before = b;
    errno = 0;
    assert_null(iop__buf_reserve(&b, SIZE_MAX));
    assert_int_equal(errno, ENOMEM);
    assert_ptr_equal(b.data, before.data);
    assert_int_equal(b.cap, before.cap);
    assert_int_equal(b.len, before.len);
    assert_int_equal(b.off, before.off);
    assert_int_equal(iop__buf_append(&b, "x", SIZE_MAX), -ENOMEM);
    assert_memory_equal(iop__buf_head(&b), "keep", 4);
    iop__buf_free(&b);
}

/* Used as a FIFO with reads and writes of random sizes, the buffer gives
 * back exactly the bytes put in, in order. */
static void test_fifo_model(void **state)
{
    (void)state;
    struct iop__buf b = {0};
    uint64_t x = 88172645463325252ull;
    size_t in = 0, out = 0;
    char chunk[9000];
    for (int i = 0; i < 3000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = (size_t)(x % sizeof chunk);
        if (x & (1u << 20)) {
            /* write through reserve/commit, sometimes less than reserved */
            char *p = iop__buf_reserve(&b, n);
            assert_non_null(p);
            size_t got = (x & (1u << 21)) ? n / 2 : n;
            fill(p, in, got);
            iop__buf_commit(&b, got);
            in += got;
        } else {
            fill(chunk, in, n);
            assert_int_equal(iop__buf_append(&b, chunk, n), 0);
            in += n;
        }
        size_t take = (size_t)((x >> 32) % (iop__buf_used(&b) + 1));
        assert_holds(&b, out, in - out);
        iop__buf_consume(&b, take);
        out += take;
    }
    assert_holds(&b, out, in - out);
    iop__buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_commit),
        cmocka_unit_test(test_reserve_zero),
        cmocka_unit_test(test_send_frame_empty_raw),
        cmocka_unit_test(test_append_and_growth),
        cmocka_unit_test(test_append_zero),
        cmocka_unit_test(test_consume_then_slide),
        cmocka_unit_test(test_reserve_with_room_does_not_move),
        cmocka_unit_test(test_consume_to_empty),
        cmocka_unit_test(test_free_releases),
        cmocka_unit_test(test_large_appends),
        cmocka_unit_test(test_reserve_impossible),
        cmocka_unit_test(test_fifo_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
