/* A small JSON reader (see json_read.h). */
#include "json_read.h"

#include <stdlib.h>
#include <string.h>

const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Past the value at p, or NULL if it is not one (or is cut short). */
const char *json_skip(const char *p, int depth)
{
    p = json_ws(p);
    if (depth > 32)
        return NULL;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && !*++p)
                return NULL;
        return *p == '"' ? p + 1 : NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (*p != '"' || !(p = json_skip(p, depth + 1)))
                    return NULL;
                p = json_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            if (!(p = json_skip(p, depth + 1)))
                return NULL;
            p = json_ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    const char *s = p;
    while (*p && strchr("0123456789+-.eEtruefalsn", *p))
        p++;
    return p > s ? p : NULL;
}

/* The value of key in the object at obj, or NULL. */
const char *json_get(const char *obj, const char *key)
{
    if (!obj)
        return NULL;
    const char *p = json_ws(obj);
    if (*p != '{')
        return NULL;
    p = json_ws(p + 1);
    size_t klen = strlen(key);
    while (*p == '"') {
        const char *k = p + 1, *after = json_skip(p, 0);
        if (!after)
            return NULL;
        int match = (size_t)(after - 1 - k) == klen && strncmp(k, key, klen) == 0;
        p = json_ws(after);
        if (*p++ != ':')
            return NULL;
        p = json_ws(p);
        if (match)
            return p;
        if (!(p = json_skip(p, 1)))
            return NULL;
        p = json_ws(p);
        if (*p != ',')
            return NULL;
        p = json_ws(p + 1);
    }
    return NULL;
}

/* 1 and the number, 0 if absent or null. */
int json_num_at(const char *obj, const char *key, double *v)
{
    const char *p = json_get(obj, key);
    char *end;
    if (!p || *p == 'n')
        return 0;
    *v = strtod(p, &end);
    return end > p;
}

uint64_t json_u64(const char *obj, const char *key)
{
    double v = 0;
    if (!json_num_at(obj, key, &v) || !(v > 0))
        return 0;
    return v < 1.8e19 ? (uint64_t)(v + 0.5) : UINT64_MAX;
}

/* The string's text (escapes other than \" and \\ kept as they are). */
int json_str_at(const char *obj, const char *key, char *buf, size_t len)
{
    const char *p = json_get(obj, key);
    if (!p || *p != '"' || len == 0)
        return 0;
    size_t n = 0;
    for (p++; *p && *p != '"' && n + 1 < len; p++) {
        if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
            p++;
        buf[n++] = *p;
    }
    buf[n] = '\0';
    return 1;
}
