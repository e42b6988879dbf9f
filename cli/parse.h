/*
 * The values of the command line: numbers, amounts with k/m suffixes,
 * sizes and size ranges, seconds, MODEL:N. Pure functions that never
 * print: the caller words the error, and the fuzzer (fuzz/) links them.
 */
#ifndef IOPLEX_CLI_PARSE_H
#define IOPLEX_CLI_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* A non-negative decimal, digits only, within [min, max] (min >= 0);
 * -1 if not. */
long long cli_parse_number(const char *s, long long min, long long max);
/* The same with an optional suffix: k and m are 1000 and 10^6, or 1024
 * and 2^20 when `binary`. -1 if not a number in [min, max]. */
long long cli_parse_amount(const char *s, long long min, long long max, int binary);
/* "N" or "MIN-MAX", binary amounts from 1 to UINT32_MAX, MIN <= MAX.
 * Returns 0 or -1 (nothing stored). */
int cli_parse_size_range(const char *s, uint32_t *lo, uint32_t *hi);
/* Seconds, decimals allowed, within [min, max]. Returns 0 or -1. */
int cli_parse_seconds(const char *s, double min, double max, double *out);

#define CLI_MODEL_N_MAX 1024
/* "NAME" or "NAME:N" (-m prefork:8 is -m prefork -w 8): NAME is copied
 * into name[len], *n is N from 1 to CLI_MODEL_N_MAX, or 0 without ":N".
 * Returns 0, or -1 for a bad N or a NAME that does not fit. */
int cli_parse_model(const char *spec, char *name, size_t len, unsigned *n);

#endif
