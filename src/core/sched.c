/*
 * sched.c - queue order, slices, victims and admission estimates.  No I/O.
 */
#include "sched.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const policy_names[SCHED_NPOLICIES] = {
	[SCHED_FCFS] = "fcfs",
	[SCHED_SJF] = "sjf",
	[SCHED_PRIORITY] = "priority",
	[SCHED_RR] = "rr",
};

int
sched_policy_parse(const char *s)
{
	for (int i = 0; i < SCHED_NPOLICIES; i++)
		if (s && strcmp(s, policy_names[i]) == 0)
			return i;
	return -1;
}

const char *
sched_policy_name(enum sched_policy p)
{
	return (unsigned)p < SCHED_NPOLICIES ? policy_names[p] : "invalid";
}

/* Arrival, then id: a total order, so qsort's instability never shows. */
static int
by_arrival(const struct sched_item *a, const struct sched_item *b)
{
	if (a->arrival != b->arrival)
		return a->arrival < b->arrival ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id;
}

static int
cmp_fcfs(const void *x, const void *y)
{
	return by_arrival(x, y);
}

static int
cmp_sjf(const void *x, const void *y)
{
	const struct sched_item *a = x, *b = y;

	if (a->runtime_s != b->runtime_s) {
		if (a->runtime_s == 0)
			return 1;
		if (b->runtime_s == 0)
			return -1;
		return a->runtime_s < b->runtime_s ? -1 : 1;
	}
	return by_arrival(a, b);
}

static int
cmp_priority(const void *x, const void *y)
{
	const struct sched_item *a = x, *b = y;

	if (a->priority != b->priority)
		return a->priority > b->priority ? -1 : 1;
	return by_arrival(a, b);
}

void
sched_order(enum sched_policy p, struct sched_item *q, size_t n)
{
	int (*cmp)(const void *, const void *) = cmp_fcfs;

	if (p == SCHED_SJF)
		cmp = cmp_sjf;
	else if (p == SCHED_PRIORITY)
		cmp = cmp_priority;
	qsort(q, n, sizeof(*q), cmp);
}

double
sched_slice_end(double now, double quantum, double rate)
{
	if (rate <= 0)
		return INFINITY;
	return now + quantum / rate;
}

int
sched_pick_victim(const double *slice_end, const int *preemptible, size_t n,
    double now)
{
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		if (!preemptible[i] || slice_end[i] > now)
			continue;
		if (best < 0 || slice_end[i] < slice_end[best])
			best = (int)i;
	}
	return best;
}

void
sched_estimate(const struct alloc_host *h, const struct alloc_vm *run,
    const double *end, size_t nrun, const struct alloc_vm *queue,
    const long long *runtime, size_t nq, double now, double *admit_at)
{
	size_t cap = nrun + nq, n = nrun;
	struct alloc_vm *r = calloc(cap ? cap : 1, sizeof(*r));
	double *e = calloc(cap ? cap : 1, sizeof(double)), t = now;
	char why[128];
	int by_mem;

	if (r == NULL || e == NULL)
		abort();
	memcpy(r, run, nrun * sizeof(*r));
	memcpy(e, end, nrun * sizeof(double));
	for (size_t j = 0; j < nq; j++) {
		while (alloc_admit(h, r, n, &queue[j], &by_mem, why,
		    sizeof(why)) < 0) {
			/* Release the running VM that ends first. */
			size_t first = 0;
			for (size_t i = 1; i < n; i++)
				if (e[i] < e[first])
					first = i;
			if (n == 0 || isinf(e[first])) {
				for (; j < nq; j++)
					admit_at[j] = INFINITY;
				goto out;
			}
			if (e[first] > t)
				t = e[first];
			r[first] = r[n - 1];
			e[first] = e[n - 1];
			n--;
		}
		admit_at[j] = t;
		r[n] = queue[j];
		e[n] = runtime[j] > 0 ? t + (double)runtime[j] : INFINITY;
		n++;
	}
out:
	free(r);
	free(e);
}
