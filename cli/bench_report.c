/*
 * What ioplex bench says: the human summary, the JSON object, the JSON
 * Lines intervals and the hgrm file (the progress line: progress.c). Every error kind
 * comes with a sentence saying what it usually means, never a bare count.
 */
#include "bench.h"
#include "hlog.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h> /* isfinite and fabs: no libm call */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *bench_mode_name(enum bench_mode m)
{
    switch (m) {
    case MODE_RATE: return "rate";
    case MODE_STREAM: return "stream";
    case MODE_CONNECT: return "connect";
    default: return "pingpong";
    }
}

const char *bench_err_key(enum bench_err e)
{
    static const char *const keys[ERR_KINDS] = {
        "refused", "reset", "timed_out", "short_read", "mismatch", "fd_limit", "tls", "other",
    };
    return e < ERR_KINDS ? keys[e] : "?";
}

uint64_t bench_error_total(const struct bench_counters *c)
{
    uint64_t n = 0;
    for (int k = 0; k < ERR_KINDS; k++)
        n += c->errors[k];
    return n;
}

void bench_add_counters(struct bench_counters *sum, const struct bench_counters *c)
{
    sum->messages += c->messages;
    sum->failed += c->failed;
    sum->bytes_sent += c->bytes_sent;
    sum->bytes_recv += c->bytes_recv;
    sum->connects += c->connects;
    sum->late += c->late;
    sum->idle_closes += c->idle_closes;
    sum->unfinished += c->unfinished;
    sum->never_sent += c->never_sent;
    sum->handshakes += c->handshakes;
    sum->resumed += c->resumed;
    if (c->tls_why[0])
        memcpy(sum->tls_why, c->tls_why, sizeof sum->tls_why);
    sum->all_answered += c->all_answered;
    sum->all_sent += c->all_sent;
    sum->all_recv += c->all_recv;
    sum->open_now += c->open_now;
    for (int k = 0; k < ERR_KINDS; k++) {
        sum->errors[k] += c->errors[k];
        if (c->errors[k])
            sum->last_errno[k] = c->last_errno[k];
    }
}

/* ---- words ------------------------------------------------------------------ */

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* "75.2 us", "1.23 ms", "12.0 s": three significant digits and a unit. */
static void fmt_ns(char *buf, size_t len, double ns)
{
    static const struct { double scale; const char *unit; } units[] = {
        {1e9, "s"}, {1e6, "ms"}, {1e3, "us"}, {1, "ns"},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ns >= units[i].scale || units[i].scale == 1) {
            double v = ns / units[i].scale;
            snprintf(buf, len, v >= 100 ? "%.0f %s" : v >= 10 ? "%.1f %s" : "%.2f %s", v,
                     units[i].unit);
            return;
        }
}

static void fmt_secs(char *buf, size_t len, int64_t ns)
{
    fmt_ns(buf, len, (double)ns);
}

void bench_explain(char *buf, size_t len, const struct bench_result *r, enum bench_err e)
{
    const struct bench_cfg *cfg = r->cfg;
    uint64_t n = r->c.errors[e];
    int err = r->c.last_errno[e];
    char t[32];
    buf[0] = '\0';
    if (n == 0)
        return;
    switch (e) {
    case ERR_REFUSED:
        if (!cfg->stream)
            snprintf(buf, len, "%" PRIu64 " %s refused (ICMP port unreachable): is a "
                     "server listening on %s?", n, plural(n, "datagram was", "datagrams were"),
                     cfg->target);
        else
            snprintf(buf, len, "%" PRIu64 " connection %s refused: is the server "
                     "running and listening on %s, with a listen backlog big enough for "
                     "%u connections at once?", n, plural(n, "attempt was", "attempts were"),
                     cfg->target, cfg->conns);
        break;
    case ERR_RESET:
        snprintf(buf, len, "%" PRIu64 " %s reset by the server: it crashed, hit a "
                 "limit (descriptors, a connection cap), or closed with unread data.",
                 n, plural(n, "connection was", "connections were"));
        break;
    case ERR_TIMEOUT:
        fmt_secs(t, sizeof t, cfg->timeout_ns);
        snprintf(buf, len, "%" PRIu64 " %s no answer within %s (--timeout): the "
                 "server stalled or is overloaded%s.", n,
                 cfg->mode == MODE_STREAM ? plural(n, "connection made", "connections made")
                                          : plural(n, "message or connect got",
                                                   "messages or connects got"),
                 t, cfg->stream ? "" : ", or datagrams were lost");
        if (r->c.never_sent) {
            size_t used = strlen(buf);
            snprintf(buf + used, len - used, " %" PRIu64 " of them %s never sent: %.0f/s "
                     "is more than %u %s with %u in flight each could carry at the "
                     "server's speed.", r->c.never_sent,
                     plural(r->c.never_sent, "was", "were"), cfg->rate, cfg->conns,
                     plural(cfg->conns, "connection", "connections"), cfg->pipeline);
        }
        if (cfg->mode == MODE_STREAM) /* "made no answer" reads badly */
            snprintf(buf, len, "%" PRIu64 " %s no progress within %s (--timeout): the "
                     "server stopped reading or writing.", n,
                     plural(n, "connection made", "connections made"), t);
        break;
    case ERR_SHORT:
        if (cfg->mode == MODE_CONNECT)
            snprintf(buf, len, "%" PRIu64 " %s closed by the server before all the "
                     "bytes asked for arrived (short read): it closes early or crashed "
                     "mid-answer.", n, plural(n, "request was", "requests were"));
        else
            snprintf(buf, len, "%" PRIu64 " %s closed by the server before the full "
                     "answer arrived (short read): it closes early, crashed mid-answer, "
                     "or limits the message size.", n,
                     plural(n, "connection was", "connections were"));
        break;
    case ERR_MISMATCH:
        snprintf(buf, len, "%" PRIu64 " %s the wrong bytes (mismatch): the server did "
                 "not echo exactly what was sent%s.", n,
                 plural(n, "answer had", "answers had"),
                 cfg->stream ? " (is it an echo server with the same --framing?)" : "");
        break;
    case ERR_FDLIMIT:
        snprintf(buf, len, "%" PRIu64 " %s not be opened: out of descriptors "
                 "(EMFILE/ENFILE; the limit here is %ld): use fewer connections or "
                 "raise ulimit -n.", n, plural(n, "socket could", "sockets could"),
                 cfg->fd_limit);
        break;
    case ERR_TLS:
        snprintf(buf, len, "%" PRIu64 " %s in TLS, the last: %s%s", n,
                 plural(n, "connection failed", "connections failed"),
                 r->c.tls_why[0] ? r->c.tls_why : "?",
                 strstr(r->c.tls_why, "verify failed")
                     ? " (--tls-ca verifies the server: is it the CA that signed it?)."
                     : strstr(r->c.tls_why, "wrong version") ? " (is the server speaking TLS?)."
                                                             : ".");
        break;
    default:
        snprintf(buf, len, "%" PRIu64 " other %s, the last: %s%s.", n,
                 plural(n, "error", "errors"),
                 err ? strerror(err) : "the server closed the connection",
                 err == EADDRNOTAVAIL ? " (no free local port: too many connections "
                                        "to one address, or TIME_WAIT)" : "");
        break;
    }
}

/* ---- the human summary --------------------------------------------------------- */

static double per_sec(double n, double secs)
{
    return secs > 0 ? n / secs : 0;
}

void bench_report_human(FILE *f, const struct bench_result *r)
{
    const struct bench_cfg *cfg = r->cfg;
    const struct bench_counters *c = &r->c;
    char a[32], b[32];
    fprintf(f, "ioplex bench: %s mode, %s\n", bench_mode_name(cfg->mode), cfg->target);

    /* The set-up, in one line. */
    fprintf(f, "  %u %s, %u %s, ", cfg->conns, plural(cfg->conns, "connection", "connections"),
            r->threads, plural(r->threads, "thread", "threads"));
    const char *what = cfg->mode == MODE_STREAM ? "bytes per write"
                       : cfg->mode == MODE_CONNECT ? "bytes per request"
                                                   : "bytes per message";
    if (cfg->size_min == cfg->size_max)
        fprintf(f, "%u %s", cfg->size_min, what);
    else
        fprintf(f, "%u-%u %s (random)", cfg->size_min, cfg->size_max, what);
    if (cfg->mode == MODE_PINGPONG || cfg->mode == MODE_RATE)
        fprintf(f, ", %u in flight per connection%s%s", cfg->pipeline,
                cfg->stream ? ", framing " : "",
                cfg->stream ? iop_framing_name(cfg->framing) : "");
    fputc('\n', f);
    if (cfg->mode == MODE_RATE)
        fprintf(f, "  %.0f messages/s scheduled; latency counts from each message's "
                   "scheduled time\n", cfg->rate);
    fmt_secs(a, sizeof a, cfg->warmup_ns);
    fprintf(f, "  measured %.2f s %s%s%s (stopped by %s)\n", r->measured_s,
            cfg->warmup_ns ? "after a " : "with no warm-up", cfg->warmup_ns ? a : "",
            cfg->warmup_ns ? " warm-up" : "", r->stopped_by);
    if (cfg->start_at > 0) {
        char when[48];
        hlog_format_time(when, sizeof when, cfg->start_at);
        fprintf(f, "  measured from %s (--start-at); this host's clock read %+.3f ms "
                   "when it began\n", when, r->start_offset_s * 1e3);
    }
    fputc('\n', f);

    const char *unit = cfg->mode == MODE_CONNECT ? "requests" : "messages";
    if (cfg->mode != MODE_STREAM)
        fprintf(f, "  %-12s %" PRIu64 " answered (%.1f/s), %" PRIu64 " failed\n", unit,
                c->messages, per_sec((double)c->messages, r->measured_s), c->failed);
    fprintf(f, "  %-12s %.2f MB/s sent, %.2f MB/s received\n", "throughput",
            per_sec((double)c->bytes_sent, r->measured_s) / 1e6,
            per_sec((double)c->bytes_recv, r->measured_s) / 1e6);
    const iop__hist *h = r->hist;
    if (cfg->mode == MODE_STREAM) {
        fprintf(f, "  %-12s not measured in stream mode\n", "latency");
    } else if (iop__hist_count(h) == 0) {
        fprintf(f, "  %-12s none measured (no message was answered)\n", "latency");
    } else {
        static const struct { const char *name; double p; } ps[] = {
            {"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}, {"max", 100},
        };
        fprintf(f, "  %-12s", "latency");
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
            fmt_ns(a, sizeof a, (double)iop__hist_percentile(h, ps[i].p));
            fprintf(f, " %s %s%s", ps[i].name, a, i + 1 < sizeof ps / sizeof ps[0] ? "," : "");
        }
        fmt_ns(a, sizeof a, iop__hist_mean(h));
        fmt_ns(b, sizeof b, iop__hist_stddev(h));
        fprintf(f, "\n  %-12s mean %s, stddev %s", "", a, b);
        fmt_ns(a, sizeof a, (double)iop__hist_min(h));
        fprintf(f, ", min %s\n", a);
    }
    fprintf(f, "  %-12s %" PRIu64 " opened\n", "connections", c->connects);
    if (cfg->tls_ctx) {
        fprintf(f, "  %-12s %" PRIu64 " %s (%.1f/s), %" PRIu64 " resumed; the server %s\n",
                "handshakes", c->handshakes, plural(c->handshakes, "TLS handshake",
                                                    "TLS handshakes"),
                per_sec((double)c->handshakes, r->measured_s), c->resumed,
                cfg->tls_verify ? "verified (--tls-ca)" : "not verified");
        if (r->hshist && iop__hist_count(r->hshist) > 0) {
            static const struct { const char *name; double p; } hp[] = {
                {"p50", 50}, {"p90", 90}, {"p99", 99}, {"max", 100},
            };
            fprintf(f, "  %-12s", "");
            for (size_t i = 0; i < sizeof hp / sizeof hp[0]; i++) {
                fmt_ns(a, sizeof a, (double)iop__hist_percentile(r->hshist, hp[i].p));
                fprintf(f, " %s %s%s", hp[i].name, a, i + 1 < sizeof hp / sizeof hp[0] ? "," : "");
            }
            fputc('\n', f);
        }
    }
    uint64_t errors = bench_error_total(c);
    if (errors == 0) {
        fprintf(f, "  %-12s none\n", "errors");
    } else {
        fprintf(f, "  %-12s %" PRIu64 " in all (the warm-up included):\n", "errors", errors);
        for (int k = 0; k < ERR_KINDS; k++) {
            char why[512];
            bench_explain(why, sizeof why, r, (enum bench_err)k);
            if (why[0])
                fprintf(f, "    - %s\n", why);
        }
    }
    if (c->unfinished && cfg->mode != MODE_STREAM)
        fprintf(f, "  note: %" PRIu64 " %s in flight at the end, not counted.\n",
                c->unfinished, cfg->mode == MODE_CONNECT
                                   ? plural(c->unfinished, "request", "requests")
                                   : plural(c->unfinished, "message", "messages"));
    if (c->late)
        fprintf(f, "  note: %" PRIu64 " %s after %s message had timed out (not counted).\n",
                c->late, plural(c->late, "answer came", "answers came"),
                plural(c->late, "its", "their"));
    if (c->idle_closes)
        fprintf(f, "  note: the server closed %" PRIu64 " idle %s; %s made again.\n",
                c->idle_closes, plural(c->idle_closes, "connection", "connections"),
                plural(c->idle_closes, "it was", "they were"));
}

/* ---- JSON ---------------------------------------------------------------------- */

/* A number, or null when there is none to give (JSON has no NaN or inf). */
static void json_num(FILE *f, double v, int have)
{
    if (have && isfinite(v) && v == (double)(int64_t)v && fabs(v) < 9007199254740992.0)
        fprintf(f, "%" PRId64, (int64_t)v); /* counts exact, not 1.21081e+06 */
    else if (have && isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

void bench_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void json_latency(FILE *f, const iop__hist *h, int full)
{
    if (!h || iop__hist_count(h) == 0) {
        fputs("null", f);
        return;
    }
    static const struct { const char *key; double p; } ps[] = {
        {"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99_9", 99.9}, {"max", 100},
    };
    fputc('{', f);
    if (full) {
        fputs("\"min\":", f);
        json_num(f, (double)iop__hist_min(h) / 1e6, 1);
        fputs(",\"mean\":", f);
        json_num(f, iop__hist_mean(h) / 1e6, 1);
        fputs(",\"stddev\":", f);
        json_num(f, iop__hist_stddev(h) / 1e6, 1);
        fputc(',', f);
    }
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        fprintf(f, "%s\"%s\":", i ? "," : "", ps[i].key);
        json_num(f, (double)iop__hist_percentile(h, ps[i].p) / 1e6, 1);
    }
    fputc('}', f);
}

static void json_errors(FILE *f, const struct bench_counters *c)
{
    fputc('{', f);
    for (int k = 0; k < ERR_KINDS; k++)
        fprintf(f, "\"%s\":%" PRIu64 ",", bench_err_key((enum bench_err)k), c->errors[k]);
    fprintf(f, "\"total\":%" PRIu64 "}", bench_error_total(c));
}

void bench_report_json(FILE *f, const struct bench_result *r)
{
    const struct bench_cfg *cfg = r->cfg;
    const struct bench_counters *c = &r->c;
    int msgs = cfg->mode != MODE_STREAM, timed = r->measured_s > 0;
    fputs("{\"tool\":\"ioplex bench\",\"version\":", f);
    bench_json_str(f, IOPLEX_VERSION);
    fprintf(f, ",\"mode\":\"%s\",\"target\":", bench_mode_name(cfg->mode));
    bench_json_str(f, cfg->target);
    fprintf(f, ",\"transport\":\"%s\",\"connections\":%u,\"threads\":%u",
            iop_transport_name(cfg->addr.transport), cfg->conns, r->threads);
    fprintf(f, ",\"size_min\":%u,\"size_max\":%u", cfg->size_min, cfg->size_max);
    fputs(",\"pipeline\":", f);
    json_num(f, cfg->pipeline, cfg->mode == MODE_PINGPONG || cfg->mode == MODE_RATE);
    fputs(",\"framing\":", f);
    if ((cfg->mode == MODE_PINGPONG || cfg->mode == MODE_RATE) && cfg->stream)
        bench_json_str(f, iop_framing_name(cfg->framing));
    else
        fputs("null", f);
    fputs(",\"rate\":", f);
    json_num(f, cfg->rate, cfg->mode == MODE_RATE);
    fputs(",\"count\":", f);
    json_num(f, (double)cfg->count, cfg->count > 0);
    fputs(",\"duration_s\":", f);
    json_num(f, (double)cfg->duration_ns / 1e9, 1);
    fputs(",\"warmup_s\":", f);
    json_num(f, (double)cfg->warmup_ns / 1e9, 1);
    fputs(",\"timeout_s\":", f);
    json_num(f, (double)cfg->timeout_ns / 1e9, 1);
    fputs(",\"measured_s\":", f);
    json_num(f, r->measured_s, 1);
    fputs(",\"stopped_by\":", f);
    bench_json_str(f, r->stopped_by);
    fputs(",\"host\":", f);
    bench_json_str(f, cfg->host);
    fputs(",\"start_unix_s\":", f);
    if (r->start_unix_s > 0)
        fprintf(f, "%.6f", r->start_unix_s);
    else
        fputs("null", f);
    fputs(",\"start_at\":", f);
    if (cfg->start_at > 0)
        fprintf(f, "%.6f", cfg->start_at);
    else
        fputs("null", f);
    fputs(",\"start_offset_ms\":", f);
    json_num(f, r->start_offset_s * 1e3, cfg->start_at > 0);

    fputs(",\"messages\":", f);
    json_num(f, (double)c->messages, msgs);
    fputs(",\"messages_failed\":", f);
    json_num(f, (double)c->failed, msgs);
    fputs(",\"messages_per_s\":", f);
    json_num(f, per_sec((double)c->messages, r->measured_s), msgs && timed);
    fprintf(f, ",\"bytes_sent\":%" PRIu64 ",\"bytes_received\":%" PRIu64, c->bytes_sent,
            c->bytes_recv);
    fputs(",\"mb_per_s_sent\":", f);
    json_num(f, per_sec((double)c->bytes_sent, r->measured_s) / 1e6, timed);
    fputs(",\"mb_per_s_received\":", f);
    json_num(f, per_sec((double)c->bytes_recv, r->measured_s) / 1e6, timed);
    fputs(",\"latency_ms\":", f);
    json_latency(f, msgs ? r->hist : NULL, 1);
    fprintf(f, ",\"connections_opened\":%" PRIu64, c->connects);
    /* --tls: the handshakes of the measured window; null without TLS. */
    fprintf(f, ",\"tls\":%s,\"handshake\":", cfg->tls_ctx ? "true" : "false");
    if (cfg->tls_ctx) {
        fprintf(f, "{\"count\":%" PRIu64 ",\"per_s\":", c->handshakes);
        json_num(f, per_sec((double)c->handshakes, r->measured_s), timed);
        fprintf(f, ",\"resumed\":%" PRIu64 ",\"verified\":%s,\"latency_ms\":", c->resumed,
                cfg->tls_verify ? "true" : "false");
        json_latency(f, r->hshist, 1);
        fputc('}', f);
    } else {
        fputs("null", f);
    }
    fputs(",\"errors\":", f);
    json_errors(f, c);
    fprintf(f, ",\"late_answers\":%" PRIu64 ",\"idle_closes\":%" PRIu64, c->late,
            c->idle_closes);
    fputs(",\"never_sent\":", f);
    json_num(f, (double)c->never_sent, cfg->mode == MODE_RATE);
    fputs(",\"in_flight_at_end\":", f);
    json_num(f, (double)c->unfinished, msgs);
    /* The whole histogram, so that `ioplex report` merges runs exactly:
     * HdrHistogram's compressed V2 form (hlog.h), nanoseconds. */
    fputs(",\"histogram\":", f);
    char *hdr = msgs && r->hist ? hlog_encode(r->hist) : NULL;
    if (hdr)
        fprintf(f, "{\"unit\":\"ns\",\"count\":%" PRIu64 ",\"min\":%" PRIu64
                   ",\"max\":%" PRIu64 ",\"sum\":%.17g,\"hdr\":\"%s\"}",
                iop__hist_count(r->hist), iop__hist_min(r->hist), iop__hist_max(r->hist),
                r->hist->sum, hdr);
    else
        fputs("null", f);
    free(hdr);
    fputs(",\"explanations\":[", f);
    int first = 1;
    for (int k = 0; k < ERR_KINDS; k++) {
        char why[512];
        bench_explain(why, sizeof why, r, (enum bench_err)k);
        if (!why[0])
            continue;
        if (!first)
            fputc(',', f);
        bench_json_str(f, why);
        first = 0;
    }
    fputs("]}\n", f);
}

void bench_report_interval(FILE *f, const struct bench_cfg *cfg, double t_s,
                           double len_s, const struct bench_counters *d,
                           const iop__hist *h)
{
    int msgs = cfg->mode != MODE_STREAM;
    fputs("{\"t_s\":", f);
    json_num(f, t_s, 1);
    fputs(",\"interval_s\":", f);
    json_num(f, len_s, 1);
    fputs(",\"messages\":", f);
    json_num(f, (double)d->messages, msgs);
    fputs(",\"messages_failed\":", f);
    json_num(f, (double)d->failed, msgs);
    fputs(",\"messages_per_s\":", f);
    json_num(f, per_sec((double)d->messages, len_s), msgs && len_s > 0);
    fprintf(f, ",\"bytes_sent\":%" PRIu64 ",\"bytes_received\":%" PRIu64, d->bytes_sent,
            d->bytes_recv);
    fputs(",\"mb_per_s_sent\":", f);
    json_num(f, per_sec((double)d->bytes_sent, len_s) / 1e6, len_s > 0);
    fputs(",\"mb_per_s_received\":", f);
    json_num(f, per_sec((double)d->bytes_recv, len_s) / 1e6, len_s > 0);
    fputs(",\"latency_ms\":", f);
    json_latency(f, msgs ? h : NULL, 0);
    fprintf(f, ",\"connections_open\":%" PRIu64 ",\"errors\":", d->open_now);
    json_errors(f, d);
    fputs("}\n", f);
}

/* ---- HdrHistogram's text output ---------------------------------------------------- */

int bench_write_hgrm(FILE *f, const iop__hist *h)
{
    /* The layout of HdrHistogram's outputPercentileDistribution(), five
     * ticks per half distance, values scaled from ns to ms. */
    const double scale = 1e6;
    fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
            "1/(1-Percentile)");
    struct iop__hist_pct_iter it;
    iop__hist_pct_iter_init(&it, h, 5);
    while (iop__hist_pct_iter_next(&it)) {
        double p = it.percentile / 100.0;
        if (it.percentile < 100.0)
            fprintf(f, "%12.3f %2.12f %10" PRIu64 " %14.2f\n", (double)it.value / scale, p,
                    it.total_to, 1.0 / (1.0 - p));
        else
            fprintf(f, "%12.3f %2.12f %10" PRIu64 "\n", (double)it.value / scale, p,
                    it.total_to);
    }
    fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", iop__hist_mean(h) / scale,
            iop__hist_stddev(h) / scale);
    fprintf(f, "#[Max     = %12.3f, Total count    = %12" PRIu64 "]\n",
            (double)iop__hist_max(h) / scale, iop__hist_count(h));
    fprintf(f, "#[Buckets = %12d, SubBuckets     = %12d]\n", IOP_HIST_BUCKETS,
            IOP_HIST_SUB_BUCKETS);
    return ferror(f) ? -1 : 0;
}
