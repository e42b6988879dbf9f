/* daytime (RFC 867): the date and time as text, then the server closes. */
#include "ioplex.h"

#include <stdio.h>
#include <time.h>

/* RFC 867 fixes no syntax; it suggests "Weekday, Month Day, Year Time-Zone". */
static size_t format_now(char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    return strftime(buf, len, "%A, %B %d, %Y %H:%M:%S-%Z\r\n", &tm);
}

static void daytime_open(iop_conn *c)
{
    char buf[128];
    iop_send(c, buf, format_now(buf, sizeof buf));
    iop_close(c);
}

static void daytime_datagram(iop_peer *p, const char *msg, size_t len)
{
    (void)msg, (void)len;
    char buf[128];
    iop_peer_send(p, buf, format_now(buf, sizeof buf));
}

const struct iop_service iop__service_daytime = {
    .name = "daytime",
    .summary = "the date and time, then close (RFC 867)",
    .framing = IOP_FRAMING_RAW,
    .flags = IOP_SERVICE_AMPLIFIES, /* the date, whatever came */
    .on_open = daytime_open,
    .on_datagram = daytime_datagram,
};
