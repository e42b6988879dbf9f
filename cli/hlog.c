/* HdrHistogram's interval log and V2 encoding (see hlog.h). */
#define _GNU_SOURCE
#include "hlog.h"
#include "cli.h"

#include <inttypes.h>
#include <math.h> /* isfinite: a macro, no libm */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

/* HdrHistogram's V2 cookies, with 0x10 set: the word size is LEB128. */
#define COOKIE_ENCODING 0x1c849313u
#define COOKIE_COMPRESSED 0x1c849314u
#define COOKIE_BASE_MASK (~0xf0u)
#define HEADER_LEN 40 /* cookie, payload length, offset, digits, lowest, highest, ratio */
#define MAX_PAYLOAD (HEADER_LEN + 9 * IOP_HIST_SLOTS)

/* ---- big-endian and zig-zag LEB128 --------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* HdrHistogram's ZigZag LEB128: 7 bits a byte, the ninth byte carries 8. */
static size_t zz_put(uint8_t *p, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 0;
    while (n < 8 && z >= 0x80) {
        p[n++] = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    p[n++] = (uint8_t)z;
    return n;
}

/* 0 and the value, or -1 if it runs past end. */
static int zz_get(const uint8_t **pp, const uint8_t *end, int64_t *v)
{
    const uint8_t *p = *pp;
    uint64_t z = 0;
    for (int i = 0; i < 9; i++) {
        if (p >= end)
            return -1;
        uint8_t b = *p++;
        if (i == 8) {
            z |= (uint64_t)b << 56;
            break;
        }
        z |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    *pp = p;
    *v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return 0;
}

/* ---- base64 ----------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const uint8_t *in, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        *o++ = B64[v >> 18 & 63];
        *o++ = B64[v >> 12 & 63];
        *o++ = i + 1 < n ? B64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? B64[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static int b64_val(char c)
{
    const char *p = c ? strchr(B64, c) : NULL;
    return p ? (int)(p - B64) : -1;
}

/* Decoded length, or -1 if not base64 (padding required, as Java's is). */
static long b64_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    if (n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = s[i + k] == '=' && i + 4 == n && k >= 2 ? -2 : b64_val(s[i + k]);
            if (v[k] == -1)
                return -1;
        }
        if (v[2] == -2 && v[3] != -2)
            return -1;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                     (uint32_t)(v[2] < 0 ? 0 : v[2]) << 6 | (uint32_t)(v[3] < 0 ? 0 : v[3]);
        int bytes = v[2] == -2 ? 1 : v[3] == -2 ? 2 : 3;
        if (o + (size_t)bytes > cap)
            return -1;
        for (int k = 0; k < bytes; k++)
            out[o++] = (uint8_t)(w >> (16 - 8 * k));
    }
    return (long)o;
}

/* ---- encoding ------------------------------------------------------------- */

char *hlog_encode(const iop__hist *h)
{
    uint8_t *raw = malloc(MAX_PAYLOAD);
    uLongf zcap = compressBound(MAX_PAYLOAD);
    uint8_t *z = malloc(8 + zcap);
    char *out = NULL;
    if (!raw || !z)
        goto done;
    /* Counts up to the last non-empty slot; a run of zeros is one negative
     * number, as HdrHistogram writes it. */
    size_t limit = 0;
    for (size_t i = 0; i < IOP_HIST_SLOTS; i++)
        if (h->counts[i])
            limit = i + 1;
    size_t n = HEADER_LEN;
    for (size_t i = 0; i < limit;) {
        uint64_t c = h->counts[i++];
        if (c == 0) {
            int64_t zeros = 1;
            while (i < limit && h->counts[i] == 0)
                zeros++, i++;
            n += zz_put(raw + n, zeros > 1 ? -zeros : 0);
        } else {
            n += zz_put(raw + n, c > INT64_MAX ? INT64_MAX : (int64_t)c);
        }
    }
    double one = 1.0;
    uint64_t ratio;
    memcpy(&ratio, &one, sizeof ratio);
    put32(raw, COOKIE_ENCODING);
    put32(raw + 4, (uint32_t)(n - HEADER_LEN));
    put32(raw + 8, 0); /* normalizing index offset */
    put32(raw + 12, HLOG_SIG_DIGITS);
    put64(raw + 16, HLOG_LOWEST);
    put64(raw + 24, IOP_HIST_HIGHEST);
    put64(raw + 32, ratio); /* integer to double conversion ratio: 1.0 */
    uLongf zlen = zcap;
    if (compress2(z + 8, &zlen, raw, (uLong)n, Z_DEFAULT_COMPRESSION) != Z_OK)
        goto done;
    put32(z, COOKIE_COMPRESSED);
    put32(z + 4, (uint32_t)zlen);
    out = b64_encode(z, 8 + zlen);
done:
    free(raw);
    free(z);
    return out;
}

/* ---- decoding ---------------------------------------------------------------- */

static int fail(char *err, size_t len, const char *why)
{
    snprintf(err, len, "%s", why);
    return -1;
}

int hlog_decode(const char *b64, size_t len, iop__hist *h, char *err, size_t errlen)
{
    iop__hist_reset(h);
    size_t cap = len / 4 * 3 + 3;
    uint8_t *bin = malloc(cap), *raw = malloc(MAX_PAYLOAD);
    int rc = -1;
    if (!bin || !raw) {
        fail(err, errlen, "out of memory");
        goto done;
    }
    long blen = b64_decode(b64, len, bin, cap);
    if (blen < 0) {
        fail(err, errlen, "the histogram is not base64 (cut short?)");
        goto done;
    }
    if (blen < 8 || (get32(bin) & COOKIE_BASE_MASK) != (0x1c849304u & COOKIE_BASE_MASK)) {
        fail(err, errlen, "not a compressed V2 HdrHistogram (wrong cookie)");
        goto done;
    }
    uint32_t zlen = get32(bin + 4);
    if ((long)zlen > blen - 8) {
        fail(err, errlen, "the compressed histogram is cut short");
        goto done;
    }
    uLongf rlen = MAX_PAYLOAD;
    int zr = uncompress(raw, &rlen, bin + 8, zlen);
    if (zr == Z_BUF_ERROR && rlen == MAX_PAYLOAD) {
        fail(err, errlen, "the histogram has more slots than ioplex's (highest value above 2^40)");
        goto done;
    }
    if (zr != Z_OK) {
        fail(err, errlen, "the compressed histogram is damaged or cut short (zlib)");
        goto done;
    }
    if (rlen < HEADER_LEN || (get32(raw) & COOKIE_BASE_MASK) != (0x1c849303u & COOKIE_BASE_MASK)) {
        fail(err, errlen, "not a V2 HdrHistogram encoding (wrong inner cookie)");
        goto done;
    }
    uint32_t plen = get32(raw + 4);
    if (plen > rlen - HEADER_LEN) {
        fail(err, errlen, "the histogram's counts are cut short");
        goto done;
    }
    if (get32(raw + 12) != HLOG_SIG_DIGITS || get64(raw + 16) != HLOG_LOWEST) {
        snprintf(err, errlen, "a histogram with %" PRIu32 " significant digits and lowest value "
                 "%" PRIu64 " does not map onto ioplex's (2 digits, lowest 1)",
                 get32(raw + 12), get64(raw + 16));
        goto done;
    }
    const uint8_t *p = raw + HEADER_LEN, *end = p + plen;
    size_t idx = 0;
    while (p < end) {
        int64_t v;
        if (zz_get(&p, end, &v) != 0) {
            fail(err, errlen, "a count is cut short");
            goto done;
        }
        if (v < 0) {
            if ((uint64_t)-v > IOP_HIST_SLOTS - idx) {
                fail(err, errlen, "the histogram has more slots than ioplex's");
                goto done;
            }
            idx += (size_t)-v;
            continue;
        }
        if (idx >= IOP_HIST_SLOTS) {
            fail(err, errlen, "the histogram has more slots than ioplex's");
            goto done;
        }
        if (v > 0) {
            uint64_t lo, hi;
            iop__hist_slot_range(idx, &lo, &hi);
            h->counts[idx] = (uint64_t)v;
            h->total += (uint64_t)v;
            h->sum += ((double)lo + (double)hi) / 2.0 * (double)v;
            if (lo < h->min)
                h->min = lo;
            if (hi > h->max)
                h->max = hi;
        }
        idx++;
    }
    rc = 0;
done:
    free(bin);
    free(raw);
    return rc;
}

/* ---- the log --------------------------------------------------------------- */

int hlog_write_header(FILE *f, double start_unix_s, const char *host)
{
    time_t t = (time_t)start_unix_s;
    struct tm tm;
    char date[64] = "";
    if (gmtime_r(&t, &tm))
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, "#[Histogram log format version 1.3]\n");
    /* Under 128 bytes a line: HdrHistogram_c reads header lines into that. */
    fprintf(f, "#[ioplex bench %s on %.40s, values in ns, interval max in ms]\n",
            IOPLEX_VERSION, host && host[0] ? host : "?");
    fprintf(f, "#[StartTime: %.3f (seconds since epoch), %s]\n", start_unix_s, date);
    fprintf(f, "#[BaseTime: %.3f (seconds since epoch)]\n", start_unix_s);
    fprintf(f, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\","
               "\"Interval_Compressed_Histogram\"\n");
    return ferror(f) ? -1 : 0;
}

int hlog_write_interval(FILE *f, double offset_s, double len_s, const iop__hist *h)
{
    char *b64 = hlog_encode(h);
    if (!b64)
        return -1;
    fprintf(f, "%.3f,%.3f,%.6f,%s\n", offset_s, len_s, (double)iop__hist_max(h) / 1e6, b64);
    free(b64);
    return ferror(f) ? -1 : 0;
}

int hlog_looks_like(const char *text)
{
    if (strncmp(text, "#[Histogram log format version", 30) == 0)
        return 1;
    /* Comments first, then an interval line "number,number,number,HIST..." */
    const char *p = text;
    while (*p == '#' || *p == '"') {
        p = strchr(p, '\n');
        if (!p)
            return 0;
        p++;
    }
    if (strncmp(p, "Tag=", 4) == 0)
        p = strchr(p, ',') ? strchr(p, ',') + 1 : p;
    int commas = 0;
    for (; *p && *p != '\n' && commas < 3; p++) {
        if (*p == ',')
            commas++;
        else if (!strchr("0123456789.", *p))
            return 0;
    }
    return commas == 3 && strncmp(p, "HIST", 4) == 0;
}

static char *line_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int hlog_parse(const char *text, struct hlog_file *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    double base = 0;
    int have_base = 0;
    size_t cap = 0;
    char why[256];
    int lineno = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        lineno++;
        if (n && p[n - 1] == '\r')
            n--;
        if (n == 0) {
        } else if (strncmp(p, "#[StartTime: ", 13) == 0) {
            out->start_s = strtod(p + 13, NULL);
        } else if (strncmp(p, "#[BaseTime: ", 12) == 0) {
            base = strtod(p + 12, NULL);
            have_base = 1;
        } else if (strncmp(p, "#[ioplex bench", 14) == 0) {
            out->ours = 1;
        } else if (strncmp(p, HLOG_RESULT_PREFIX, strlen(HLOG_RESULT_PREFIX)) == 0) {
            size_t k = strlen(HLOG_RESULT_PREFIX);
            free(out->result);
            if (!(out->result = line_dup(p + k, n - k)))
                goto oom;
        } else if (p[0] == '#' || p[0] == '"') {
        } else {
            /* [Tag=T,]start,length,max,histogram */
            const char *q = p, *end = p + n;
            if (strncmp(q, "Tag=", 4) == 0) {
                q = memchr(q, ',', n);
                q = q ? q + 1 : end;
            }
            const char *f[4];
            int k = 0;
            f[k++] = q;
            for (const char *c = q; c < end && k < 4; c++)
                if (*c == ',')
                    f[k++] = c + 1;
            if (k < 4) {
                snprintf(err, errlen, "line %d: not an interval line (start,length,max,"
                         "histogram): cut short?", lineno);
                goto bad;
            }
            char *e1, *e2;
            double start = strtod(f[0], &e1), len = strtod(f[1], &e2);
            if (e1 == f[0] || *e1 != ',' || e2 == f[1] || *e2 != ',' || !isfinite(start) ||
                !isfinite(len) || len < 0) {
                snprintf(err, errlen, "line %d: the interval's start and length are not "
                         "numbers", lineno);
                goto bad;
            }
            if (out->n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct hlog_interval *iv = realloc(out->iv, nc * sizeof *iv);
                if (!iv)
                    goto oom;
                out->iv = iv;
                cap = nc;
            }
            struct hlog_interval *iv = &out->iv[out->n];
            iv->h = malloc(sizeof *iv->h);
            if (!iv->h)
                goto oom;
            out->n++;
            if (hlog_decode(f[3], (size_t)(end - f[3]), iv->h, why, sizeof why) != 0) {
                snprintf(err, errlen, "line %d: %s", lineno, why);
                goto bad;
            }
            /* The interval's max (ms), when it fits its slot, is exact. */
            double max_ns = strtod(f[2], NULL) * 1e6 + 0.5;
            if (iv->h->total && max_ns >= 0 && max_ns <= (double)IOP_HIST_HIGHEST &&
                iop__hist_slot((uint64_t)max_ns) == iop__hist_slot(iv->h->max))
                iv->h->max = (uint64_t)max_ns;
            /* Like HdrHistogram's reader: a start more than a year before
             * StartTime is relative to the base time. */
            double b = have_base ? base
                       : start < out->start_s - 365 * 24 * 3600.0 ? out->start_s : 0;
            iv->start_s = b + start;
            iv->len_s = len;
        }
        p = nl ? nl + 1 : p + n;
        if (!nl)
            break;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
bad:
    hlog_free(out);
    return -1;
}

void hlog_free(struct hlog_file *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->iv[i].h);
    free(f->iv);
    free(f->result);
    memset(f, 0, sizeof *f);
}

/* ---- times ------------------------------------------------------------------ */

static int digits(const char **pp, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*pp)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *pp += n;
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int hlog_parse_time(const char *s, double *unix_s)
{
    if (!s || !*s)
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end == '\0' && end != s && strchr(s, '-') == NULL && strchr(s, ':') == NULL) {
        if (!(v >= 0 && v < 1e11))
            return -1;
        *unix_s = v;
        return 0;
    }
    /* RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) */
    const char *p = s;
    int y, mo, d, h, mi, se, oh = 0, om = 0;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
        digits(&p, 2, &se))
        return -1;
    double frac = 0;
    if (*p == '.') {
        double scale = 0.1;
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9') {
            frac += (*p++ - '0') * scale;
            scale /= 10;
        }
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '-' ? -1 : 1;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
            return -1;
    } else {
        return -1;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 ||
        oh > 23 || om > 59)
        return -1;
    long long t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    t -= sign * (oh * 3600 + om * 60);
    *unix_s = (double)t + frac;
    return 0;
}

double hlog_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void hlog_format_time(char *buf, size_t len, double unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    char base[32] = "?";
    if (gmtime_r(&t, &tm))
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    double frac = unix_s - (double)t;
    if (frac > 0.0005)
        snprintf(buf, len, "%s.%03dZ", base, (int)(frac * 1000));
    else
        snprintf(buf, len, "%sZ", base);
}
