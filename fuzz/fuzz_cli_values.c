/*
 * The command line's values (cli/parse.c), each against a reference
 * written here the slow, obvious way, and the address arguments
 * (cli_parse_address in cli/common.c).
 *
 * Properties:
 *  - cli_parse_number: accepts exactly the strings of decimal digits whose
 *    value is in [min, max], and returns that value;
 *  - cli_parse_amount: the same with one optional k/K/m/M suffix, times
 *    1000 / 10^6 (1024 / 2^20 when binary);
 *  - cli_parse_size_range: "N" or "A-B" with A <= B, both amounts of 1 to
 *    UINT32_MAX (binary); nothing stored on failure;
 *  - cli_parse_seconds: what it accepts is the whole string as strtod
 *    reads it, and within [min, max] (never NaN);
 *  - cli_parse_model: NAME:N splits at the first ':', N from 1 to 1024;
 *  - cli_parse_address: returns 0 or an error, and agrees with the library
 *    parser it wraps.
 *
 * Input: selector byte, two bytes for the bounds, then the string.
 */
#include "fuzz_util.h"
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* Digits only, value by hand; -1 if not digits, -2 past LLONG_MAX. */
static long long ref_digits(const char *s, size_t n)
{
    if (n == 0)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v > (LLONG_MAX - (s[i] - '0')) / 10)
            return -2;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static long long ref_number(const char *s, long long min, long long max)
{
    long long v = ref_digits(s, strlen(s));
    return v < 0 || v < min || v > max ? -1 : v;
}

static long long ref_amount(const char *s, long long min, long long max, int binary)
{
    size_t n = strlen(s);
    long long mult = 1;
    if (n > 0) {
        char c = s[n - 1];
        if (c == 'k' || c == 'K')
            mult = binary ? 1024 : 1000;
        else if (c == 'm' || c == 'M')
            mult = binary ? 1048576 : 1000000;
    }
    long long v = ref_digits(s, mult == 1 ? n : n - 1);
    if (v < 0 || v > LLONG_MAX / mult)
        return -1;
    v *= mult;
    return v < min || v > max ? -1 : v;
}

/* Bounds from two bytes: small ones, and the ones the tool uses. */
static long long bound(uint8_t b)
{
    static const long long used[] = {0, 1, 1024, 86400, 1000000, 1LL << 30,
                                     UINT32_MAX, 1000000000000LL, LLONG_MAX};
    return b < 200 ? b : used[b % (sizeof used / sizeof used[0])];
}

static void check_number(const char *s, uint8_t b1, uint8_t b2)
{
    long long min = bound(b1), max = bound(b2);
    FUZZ_CHECK(cli_parse_number(s, min, max) == ref_number(s, min, max));
    for (int binary = 0; binary < 2; binary++)
        FUZZ_CHECK(cli_parse_amount(s, min, max, binary) == ref_amount(s, min, max, binary));
}

static void check_size_range(const char *s)
{
    uint32_t lo = 7, hi = 9;
    int r = cli_parse_size_range(s, &lo, &hi);
    const char *dash = strchr(s, '-');
    long long a, b;
    if (dash) {
        char first[64];
        size_t n = (size_t)(dash - s);
        /* The tool's limit on the first half: 31 characters. */
        if (n == 0 || n >= 32) {
            a = -1;
        } else {
            memcpy(first, s, n);
            first[n] = '\0';
            a = ref_amount(first, 1, UINT32_MAX, 1);
        }
        b = ref_amount(dash + 1, 1, UINT32_MAX, 1);
    } else {
        a = b = ref_amount(s, 1, UINT32_MAX, 1);
    }
    int ok = a >= 1 && b >= 1 && a <= b;
    FUZZ_CHECK((r == 0) == ok);
    if (ok)
        FUZZ_CHECK(lo == a && hi == b);
    else
        FUZZ_CHECK(lo == 7 && hi == 9); /* nothing stored */
}

static void check_seconds(const char *s, uint8_t b1, uint8_t b2)
{
    double min = b1 / 16.0, max = b2 * 100.0 / 16.0;
    double v = -12345;
    int r = cli_parse_seconds(s, min, max, &v);
    if (r != 0) {
        FUZZ_CHECK(v == -12345);
        return;
    }
    FUZZ_CHECK(!isnan(v) && v >= min && v <= max);
    char *end;
    errno = 0;
    double again = strtod(s, &end);
    FUZZ_CHECK(*s && !*end && errno == 0 && again == v);
}

static void check_model(const char *s, uint8_t b1)
{
    size_t len = (size_t)b1 % 80 + 1;
    char name[81];
    memset(name, 'Z', sizeof name);
    unsigned n = 12345;
    int r = cli_parse_model(s, name, len, &n);
    const char *colon = strchr(s, ':');
    size_t nlen = colon ? (size_t)(colon - s) : strlen(s);
    long long want_n = colon ? ref_number(colon + 1, 1, CLI_MODEL_N_MAX) : 0;
    int ok = want_n >= 0 && nlen < len;
    FUZZ_CHECK((r == 0) == ok);
    for (size_t i = len; i < sizeof name; i++)
        FUZZ_CHECK(name[i] == 'Z'); /* nothing written past len */
    if (ok) {
        FUZZ_CHECK(n == (unsigned)want_n);
        FUZZ_CHECK(strlen(name) == nlen && memcmp(name, s, nlen) == 0);
    }
}

/* The address arguments: "[HOST] PORT" (split at the first space), one
 * ADDRESS, or -U PATH. */
static void check_address(char *s, uint8_t b1)
{
    static const enum iop_transport ts[] = {IOP_TCP, IOP_UDP};
    static const int fams[] = {AF_UNSPEC, AF_INET, AF_INET6};
    enum iop_transport t = ts[b1 & 1];
    int family = fams[(b1 >> 1) % 3];
    int server = (b1 >> 3) & 1;
    struct iop_addr a, lib;
    if ((b1 >> 4) & 1) {
        int r = cli_parse_address("fuzz", &a, t, family, s, 0, NULL, server);
        FUZZ_CHECK((r == 0) == (iop_addr_set_unix(&lib, t, s) == 0));
        return;
    }
    char *argv[3] = {s, NULL, NULL};
    int argc = 1;
    char *space = strchr(s, ' ');
    if (space) {
        *space = '\0';
        argv[1] = space + 1;
        argc = 2;
    }
    int r = cli_parse_address("fuzz", &a, t, family, NULL, argc, argv, server);
    int lr = argc == 2 ? iop_addr_set_host(&lib, t, argv[0], argv[1])
                       : iop_addr_parse(&lib, argv[0], t);
    if (lr != 0)
        FUZZ_CHECK(r != 0);
    if (r == 0) {
        FUZZ_CHECK(lr == 0);
        FUZZ_CHECK(a.transport == lib.transport && strcmp(a.host, lib.host) == 0 &&
                   strcmp(a.port, lib.port) == 0 && strcmp(a.path, lib.path) == 0);
        if (family != AF_UNSPEC && !iop_transport_is_unix(a.transport))
            FUZZ_CHECK(a.family == family);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* cli_parse_address words its errors on stderr: send that stream
     * (the FILE, not descriptor 2, which the sanitizers and libFuzzer
     * report on) to /dev/null. */
    FILE *null = fopen("/dev/null", "w");
    if (null)
        stderr = null;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
    struct fuzz_in in = {bytes, size};
    uint8_t op = fuzz_byte(&in), b1 = fuzz_byte(&in), b2 = fuzz_byte(&in);
    char *s = malloc(in.n + 1);
    FUZZ_CHECK(s);
    memcpy(s, in.p, in.n);
    s[in.n] = '\0';
    switch (op % 5) {
    case 0: check_number(s, b1, b2); break;
    case 1: check_size_range(s); break;
    case 2: check_seconds(s, b1, b2); break;
    case 3: check_model(s, b1); break;
    case 4: check_address(s, b1); break;
    }
    free(s);
    return 0;
}
