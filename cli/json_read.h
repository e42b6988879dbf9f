/*
 * A small JSON reader, enough for bench's own objects (ioplex report reads
 * them back): find a member of an object and read it as a number or a
 * string, in place, without building a tree. Input from a file a user
 * gives: every function stops at the end of the text or a malformed
 * value, and nesting deeper than 32 is refused.
 */
#ifndef IOPLEX_JSON_READ_H
#define IOPLEX_JSON_READ_H

#include <stddef.h>
#include <stdint.h>

/* Past any white space. */
const char *json_ws(const char *p);
/* Past the value at p (depth: its nesting so far), or NULL if it is not
 * one or is cut short. */
const char *json_skip(const char *p, int depth);
/* The value of member `key` of the object at obj (NULL: none), or NULL. */
const char *json_get(const char *obj, const char *key);
/* 1 and the number, 0 if absent, null or not a number. */
int json_num_at(const char *obj, const char *key, double *v);
/* The number rounded, 0 if absent or not above 0, UINT64_MAX if beyond. */
uint64_t json_u64(const char *obj, const char *key);
/* 1 and the string's text (\" and \\ unescaped, other escapes kept), cut
 * to len; 0 if absent or not a string. */
int json_str_at(const char *obj, const char *key, char *buf, size_t len);

#endif
