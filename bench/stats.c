/*
 * stats.c - medians, percentiles and the JSON the benchmark report reads.
 */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double
bench_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void
ops_add(struct ops *o, const char *label, double ms)
{
	struct op *op = NULL;

	for (int i = 0; i < o->n; i++)
		if (strcmp(o->op[i].label, label) == 0)
			op = &o->op[i];
	if (op == NULL) {
		if (o->n == OPS_MAX)
			return;
		op = &o->op[o->n++];
		op->label = label;
	}
	if (op->n == op->cap) {
		op->cap = op->cap ? op->cap * 2 : 16;
		op->ms = realloc(op->ms, (size_t)op->cap * sizeof(double));
		if (op->ms == NULL)
			abort();
	}
	op->ms[op->n++] = ms;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples. */
static double
pct(const double *s, int n, double p)
{
	int k = (int)(p / 100.0 * n + 0.999999) - 1;

	return s[k < 0 ? 0 : k >= n ? n - 1 : k];
}

json_t *
ops_json(struct ops *o)
{
	json_t *ops = json_object();

	for (int i = 0; i < o->n; i++) {
		struct op *op = &o->op[i];
		json_t *samples = json_array();
		double *s = malloc((size_t)op->n * sizeof(double));
		for (int k = 0; k < op->n; k++) {
			json_array_append_new(samples, json_real(op->ms[k]));
			s[k] = op->ms[k];
		}
		qsort(s, (size_t)op->n, sizeof(double), cmp);
		double median = op->n % 2 ? s[op->n / 2] :
		    (s[op->n / 2 - 1] + s[op->n / 2]) / 2;
		json_object_set_new(ops, op->label, json_pack(
		    "{s:i, s:f, s:f, s:f, s:f, s:o}", "n", op->n,
		    "median_ms", median, "p90_ms", pct(s, op->n, 90),
		    "min_ms", s[0], "max_ms", s[op->n - 1],
		    "samples_ms", samples));
		free(s);
	}
	return json_pack("{s:o}", "ops", ops);
}

int
ops_write(struct ops *o, const char *path)
{
	json_t *j = ops_json(o);
	int rc = path ? json_dump_file(j, path, JSON_INDENT(1)) :
	    json_dumpf(j, stdout, JSON_INDENT(1));

	json_decref(j);
	return rc;
}
