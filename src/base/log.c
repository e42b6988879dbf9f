/*
 * Reporting: every line the library says goes through iop_report(), to
 * the server's report sink, escaped once here. A leaf: it calls nothing of
 * ours above it.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (n bytes left) that is a
 * printable character, or 0: invalid (a stray continuation, an overlong
 * form, a surrogate, beyond U+10FFFF, cut short), or a C1 control
 * (U+0080..U+009F). The ranges are RFC 3629's. ASCII is the caller's. */
static size_t utf8_printable(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        len = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        len = 3;
        if (p[0] == 0xE0)
            lo = 0xA0; /* no overlong */
        else if (p[0] == 0xED)
            hi = 0x9F; /* no surrogate */
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        len = 4;
        if (p[0] == 0xF0)
            lo = 0x90;
        else if (p[0] == 0xF4)
            hi = 0x8F; /* at most U+10FFFF */
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    if (p[0] == 0xC2 && p[1] <= 0x9F)
        return 0; /* C1 control */
    return len;
}

size_t iop__escape(char *out, size_t cap, const char *in, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < len;) {
        size_t n = p[i] >= 0x20 && p[i] < 0x7F ? 1
                 : p[i] >= 0x80 ? utf8_printable(p + i, len - i) : 0;
        if (n > 0) {
            if (o + n >= cap)
                break;
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
            continue;
        }
        if (o + 4 >= cap)
            break;
        out[o++] = '\\';
        out[o++] = 'x';
        out[o++] = hex[p[i] >> 4];
        out[o++] = hex[p[i] & 15];
        i++;
    }
    out[o] = '\0';
    return o;
}

void iop_report(const iop_server *s, enum iop_log level, const char *fmt, ...)
{
    if (!iop__reporting(s, level))
        return; /* (a debug line nobody asked for is not formatted) */
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* Lines carry what peers chose (ack's message, a Unix peer's socket
     * path): every one is escaped here, once, so that no escape sequence,
     * carriage return or newline of theirs reaches a terminal or a log
     * (audit finding 7). As cat -v and journald do: control bytes (C0,
     * DEL, C1) and invalid UTF-8 become \xNN; printable UTF-8 stays. */
    char safe[sizeof line]; /* a line stays under 1024 bytes, escapes included */
    iop__escape(safe, sizeof safe, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    s->cfg.report(s->cfg.report_ctx, level, safe);
}
