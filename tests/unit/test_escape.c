/*
 * iop__escape(): what iop_report() makes of every line before a terminal
 * or a log sees it (audit finding 7). Control bytes and invalid UTF-8
 * become \xNN; printable ASCII and valid, printable UTF-8 stay as they are.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "internal.h"

static void expect(const char *in, size_t len, const char *want)
{
    char out[512];
    size_t n = iop__escape(out, sizeof out, in, len);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}
#define EXPECT(lit, want) expect(lit, sizeof lit - 1, want)

static void plain_text_unchanged(void **state)
{
    (void)state;
    EXPECT("Here is the message: hello", "Here is the message: hello");
    EXPECT(" !\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~", " !\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~");
    EXPECT("", "");
}

static void c0_and_del(void **state)
{
    (void)state;
    EXPECT("\x1b[31mred\x1b[0m", "\\x1B[31mred\\x1B[0m");
    EXPECT("a\rb", "a\\x0Db");
    EXPECT("x\nioplex serve: accept: recovered", "x\\x0Aioplex serve: accept: recovered");
    EXPECT("\t\x01\x7f", "\\x09\\x01\\x7F");
    expect("a\0b", 3, "a\\x00b");
}

static void utf8_kept(void **state)
{
    (void)state;
    EXPECT("caf\xc3\xa9", "caf\xc3\xa9");                 /* U+00E9 */
    EXPECT("\xc2\xa0", "\xc2\xa0");                       /* U+00A0, first after C1 */
    EXPECT("\xe2\x82\xac", "\xe2\x82\xac");               /* U+20AC */
    EXPECT("\xed\x9f\xbf", "\xed\x9f\xbf");               /* U+D7FF */
    EXPECT("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");       /* U+1F600 */
    EXPECT("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");       /* U+10FFFF */
}

static void c1_escaped(void **state)
{
    (void)state;
    EXPECT("\xc2\x9b" "31m", "\\xC2\\x9B31m"); /* U+009B, CSI */
    EXPECT("\xc2\x85", "\\xC2\\x85");          /* U+0085, NEL */
    EXPECT("\x9b" "31m", "\\x9B31m");          /* a raw 8-bit CSI: not UTF-8 */
}

static void invalid_utf8_escaped(void **state)
{
    (void)state;
    EXPECT("\xff\xfe", "\\xFF\\xFE");
    EXPECT("\xc0\xaf", "\\xC0\\xAF");             /* overlong '/' */
    EXPECT("\xe0\x80\xaf", "\\xE0\\x80\\xAF");    /* overlong, 3 bytes */
    EXPECT("\xed\xa0\x80", "\\xED\\xA0\\x80");    /* a surrogate */
    EXPECT("\xf4\x90\x80\x80", "\\xF4\\x90\\x80\\x80"); /* beyond U+10FFFF */
    EXPECT("\xe2\x82", "\\xE2\\x82");             /* cut short */
    EXPECT("\xe2\x82" "a", "\\xE2\\x82a");        /* cut by ASCII */
    EXPECT("\x80", "\\x80");                      /* stray continuation */
}

static void bounded(void **state)
{
    (void)state;
    char out[8];
    /* Cut at a whole escape or character, always terminated. */
    assert_int_equal(iop__escape(out, sizeof out, "abc\x1b\x1b", 5), 7);
    assert_string_equal(out, "abc\\x1B");
    assert_int_equal(iop__escape(out, sizeof out, "abcdef\xc3\xa9", 8), 6);
    assert_string_equal(out, "abcdef");
    assert_int_equal(iop__escape(out, 1, "abc", 3), 0);
    assert_string_equal(out, "");
    assert_int_equal(iop__escape(out, 0, "abc", 3), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_text_unchanged),
        cmocka_unit_test(c0_and_del),
        cmocka_unit_test(utf8_kept),
        cmocka_unit_test(c1_escaped),
        cmocka_unit_test(invalid_utf8_escaped),
        cmocka_unit_test(bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
