/* hdr-histogram-js through node (see hdrjs.h). */
#define _GNU_SOURCE
#include "hdrjs.h"
#include "harness.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define NPM_TIMEOUT_MS 110000
#define NODE_TIMEOUT_MS 30000

static char module_dir[600];

static const char SCRIPT[] =
    "const fs = require('fs');\n"
    "const hdr = require(process.argv[2]);\n"
    "const make = () => hdr.build({lowestDiscernibleValue: 1,\n"
    "  highestTrackableValue: 2 ** 40 - 1, numberOfSignificantValueDigits: 2,\n"
    "  bitBucketSize: 64});\n"
    "function load(file) {\n"
    "  const r = new hdr.HistogramLogReader(fs.readFileSync(file, 'utf8'));\n"
    "  const t = make(); let h, n = 0;\n"
    "  while ((h = r.nextIntervalHistogram()) !== null) { t.add(h); n++; }\n"
    "  return [t, n];\n"
    "}\n"
    "function desc(t, n) {\n"
    "  const o = {intervals: n, count: t.totalCount, max: t.maxValue};\n"
    "  for (const [k, p] of [['p50', 50], ['p90', 90], ['p99', 99], ['p99_9', 99.9]]) {\n"
    "    const v = t.getValueAtPercentile(p);\n"
    "    o[k] = v; o[k + '_w'] = t.sizeOfEquivalentValueRange(v);\n"
    "  }\n"
    "  return o;\n"
    "}\n"
    "const all = make(); let total = 0; const out = [];\n"
    "for (const f of process.argv.slice(3)) {\n"
    "  const [t, n] = load(f); out.push(desc(t, n)); all.add(t); total += n;\n"
    "}\n"
    "for (const o of out) console.log(JSON.stringify(o));\n"
    "console.log(JSON.stringify(desc(all, total)));\n";

int hdrjs_setup(char *err, size_t errlen)
{
    char bin[512];
    snprintf(bin, sizeof bin, "%s", ioplex_bin());
    char prefix[560];
    snprintf(prefix, sizeof prefix, "%s/npm-hdr", dirname(bin));
    snprintf(module_dir, sizeof module_dir, "%s/node_modules/hdr-histogram-js", prefix);
    char pkg[700], lock[600];
    snprintf(pkg, sizeof pkg, "%s/package.json", module_dir);
    /* ctest -j runs test_hlog and test_multihost at once: one installs,
     * the other waits for it (two npm installs into one prefix collide). */
    snprintf(lock, sizeof lock, "%s.lock", prefix);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        snprintf(err, errlen, "cannot lock %s", lock);
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    if (access(pkg, R_OK) == 0) {
        close(lfd);
        return 0; /* installed by an earlier run */
    }
    const char *argv[] = {"npm", "install", "--no-audit", "--no-fund", "--prefix", prefix,
                          "hdr-histogram-js@3", NULL};
    char out[4096], e[4096];
    int code = run_cmd(argv, NULL, 0, out, sizeof out, NULL, e, sizeof e, NPM_TIMEOUT_MS);
    close(lfd);
    if (code != 0 || access(pkg, R_OK) != 0) {
        e[strcspn(e, "\n")] = '\0';
        snprintf(err, errlen, "`npm install --prefix %s hdr-histogram-js` failed (%d): %.300s "
                 "(npm is installed by scripts/setup.sh; the registry must be reachable)",
                 prefix, code, e);
        return -1;
    }
    return 0;
}

static double field(const char *line, const char *key)
{
    char needle[32];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *p = strstr(line, needle);
    return p ? strtod(p + strlen(needle), NULL) : -1;
}

static void parse(const char *line, struct hdrjs_hist *h)
{
    h->intervals = field(line, "intervals");
    h->count = field(line, "count");
    h->max = field(line, "max");
    h->p50 = field(line, "p50");
    h->p90 = field(line, "p90");
    h->p99 = field(line, "p99");
    h->p99_9 = field(line, "p99_9");
    h->p50_w = field(line, "p50_w");
    h->p90_w = field(line, "p90_w");
    h->p99_w = field(line, "p99_w");
    h->p99_9_w = field(line, "p99_9_w");
}

int hdrjs_read(const char *const logs[], int n, struct hdrjs_hist *all,
               struct hdrjs_hist *each, char *err, size_t errlen)
{
    char script[512];
    if (!harness_tmp_path(script, sizeof script, "hdr") ||
        strlen(script) + 4 >= sizeof script) {
        snprintf(err, errlen, "no temporary directory");
        return -1;
    }
    strcat(script, ".js");
    FILE *f = fopen(script, "w");
    if (!f || fputs(SCRIPT, f) < 0 || fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s", script);
        return -1;
    }
    const char *argv[40] = {"node", script, module_dir};
    int a = 3;
    for (int i = 0; i < n && a < 39; i++)
        argv[a++] = logs[i];
    argv[a] = NULL;
    static char out[1 << 16];
    char e[4096];
    int code = run_cmd(argv, NULL, 0, out, sizeof out, NULL, e, sizeof e, NODE_TIMEOUT_MS);
    if (code != 0) {
        snprintf(err, errlen, "node (hdr-histogram-js) failed (%d): %.1000s", code, e);
        return -1;
    }
    char *line = out;
    for (int i = 0; i <= n; i++) {
        char *nl = strchr(line, '\n');
        if (!nl) {
            snprintf(err, errlen, "node printed too little: %.500s", out);
            return -1;
        }
        *nl = '\0';
        if (i < n && each)
            parse(line, &each[i]);
        if (i == n)
            parse(line, all);
        line = nl + 1;
    }
    return 0;
}
