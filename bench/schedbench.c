/*
 * schedbench - the pure scheduler's speed (src/core/alloc.c, sched.c):
 * with 1,000 VMs running and 10,000 queued, how many admission decisions
 * per second, and how long a whole pass takes (order the queue, walk it,
 * divide the host, estimate admissions).  Deterministic inputs (a fixed
 * seed), so runs compare.
 *
 *   schedbench [-r RUNNING] [-q QUEUED] [-o OUT.json]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "../src/core/alloc.h"
#include "../src/core/sched.h"
#include "stats.h"

static unsigned long long rng = 42;

static unsigned
rnd(unsigned n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)(rng >> 33) % n;
}

static void
random_vm(struct alloc_vm *v)
{
	v->policy = (enum alloc_policy)rnd(3);
	v->vcpus = 1 + rnd(4);
	v->memory_mib = 256 * (1 + rnd(16));
	v->min_memory_mib = v->memory_mib / 2;
	v->priority = 1 + (int)rnd(10);
	v->weight = 0.5 + rnd(4) * 0.5;
}

int
main(int argc, char **argv)
{
	size_t nrun = 1000, nq = 10000;
	const char *out = NULL;
	int ch;

	while ((ch = getopt(argc, argv, "r:q:o:")) != -1) {
		switch (ch) {
		case 'r': nrun = (size_t)atol(optarg); break;
		case 'q': nq = (size_t)atol(optarg); break;
		case 'o': out = optarg; break;
		default: return 2;
		}
	}
	struct alloc_vm *run = calloc(nrun + nq, sizeof(*run));
	struct alloc_vm *q = calloc(nq, sizeof(*q));
	struct sched_item *items = calloc(nq, sizeof(*items));
	double *end = calloc(nrun, sizeof(double));
	double *at = calloc(nq, sizeof(double));
	long long *rt = calloc(nq, sizeof(long long));
	for (size_t i = 0; i < nrun; i++) {
		random_vm(&run[i]);
		end[i] = 1000 + rnd(100000);
	}
	for (size_t j = 0; j < nq; j++) {
		random_vm(&q[j]);
		rt[j] = rnd(4) ? 60 + rnd(36000) : 0;
	}
	/* A host the running VMs just fit, so the queue waits. */
	struct alloc_host h = { .cpus = 512, .cpu_ratio = 4.0,
	    .memory_ratio = 1.0 };
	for (size_t i = 0; i < nrun; i++)
		h.memory_mib += alloc_reserved_memory(&run[i]);
	h.memory_mib += 1024;

	struct ops ops = { 0 };
	char why[128];
	int by_mem;
	long long decisions = 0, admitted = 0;

	/* Admission decisions: each queued VM against the running set. */
	double t0 = bench_now_ms();
	for (int rep = 0; rep < 3; rep++)
		for (size_t j = 0; j < nq; j++, decisions++)
			admitted += alloc_admit(&h, run, nrun, &q[j], &by_mem,
			    why, sizeof(why)) == 0;
	double ms = bench_now_ms() - t0;
	ops_add(&ops, "admit_decision_us", ms * 1000 / (double)decisions);

	/* Whole passes, as sched_kick() does them. */
	for (int rep = 0; rep < 5; rep++) {
		t0 = bench_now_ms();
		for (size_t j = 0; j < nq; j++)
			items[j] = (struct sched_item){ .id = (int)j,
			    .arrival = (long long)j, .runtime_s = rt[j],
			    .priority = q[j].priority };
		sched_order(SCHED_PRIORITY, items, nq);
		for (size_t j = 0; j < nq; j++)
			if (alloc_admit(&h, run, nrun, &q[items[j].id], &by_mem,
			    why, sizeof(why)) < 0)
				break;
		alloc_divide(&h, run, nrun);
		ops_add(&ops, "pass_ms", bench_now_ms() - t0);
		t0 = bench_now_ms();
		sched_estimate(&h, run, end, nrun, q, rt, nq, 0, at);
		ops_add(&ops, "estimate_ms", bench_now_ms() - t0);
	}
	json_t *j = ops_json(&ops);
	json_object_set_new(j, "running", json_integer((json_int_t)nrun));
	json_object_set_new(j, "queued", json_integer((json_int_t)nq));
	json_object_set_new(j, "admit_decisions_per_s", json_real(
	    (double)decisions / (ms / 1000)));
	printf("schedbench: %zu running, %zu queued: %.0f admission decisions/s, "
	    "a whole pass (order + admit + divide) %.2f ms, estimates %.2f ms\n",
	    nrun, nq, (double)decisions / (ms / 1000),
	    json_number_value(json_object_get(json_object_get(json_object_get(
	    j, "ops"), "pass_ms"), "median_ms")),
	    json_number_value(json_object_get(json_object_get(json_object_get(
	    j, "ops"), "estimate_ms"), "median_ms")));
	if (out)
		json_dump_file(j, out, JSON_INDENT(1));
	json_decref(j);
	(void)admitted;
	free(run);
	free(q);
	free(items);
	free(end);
	free(at);
	free(rt);
	return 0;
}
