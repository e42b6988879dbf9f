/* The values of the command line: see parse.h. */
#include "parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

long long cli_parse_number(const char *s, long long min, long long max)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    return v;
}

long long cli_parse_amount(const char *s, long long min, long long max, int binary)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = binary ? 1024 : 1000;
    else if (*end == 'm' || *end == 'M')
        mult = binary ? 1048576 : 1000000;
    if (mult != 1)
        end++;
    if (errno || *end || v > max / mult)
        return -1;
    v *= mult;
    return v < min || v > max ? -1 : v;
}

int cli_parse_size_range(const char *s, uint32_t *lo, uint32_t *hi)
{
    char first[32];
    const char *dash = s ? strchr(s, '-') : NULL;
    long long a, b;
    if (!s)
        return -1;
    if (dash) {
        size_t n = (size_t)(dash - s);
        if (n == 0 || n >= sizeof first)
            return -1;
        memcpy(first, s, n);
        first[n] = '\0';
        a = cli_parse_amount(first, 1, UINT32_MAX, 1);
        b = cli_parse_amount(dash + 1, 1, UINT32_MAX, 1);
    } else {
        a = b = cli_parse_amount(s, 1, UINT32_MAX, 1);
    }
    if (a < 1 || b < 1 || a > b)
        return -1;
    *lo = (uint32_t)a;
    *hi = (uint32_t)b;
    return 0;
}

int cli_parse_seconds(const char *s, double min, double max, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    /* !(in range) also refuses NaN. */
    if (errno || *end || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

int cli_parse_model(const char *spec, char *name, size_t len, unsigned *n)
{
    const char *colon = strchr(spec, ':');
    size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
    long long v = 0;
    if (colon && (v = cli_parse_number(colon + 1, 1, CLI_MODEL_N_MAX)) < 0)
        return -1;
    if (nlen >= len)
        return -1;
    memcpy(name, spec, nlen);
    name[nlen] = '\0';
    *n = (unsigned)v;
    return 0;
}
