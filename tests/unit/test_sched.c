/*
 * test_sched.c - the scheduler's pure parts (src/core/sched.c): queue order
 * of each policy from scrambled input with ties, round-robin slice ends,
 * the choice of victim, and admission estimates worked out by hand on small
 * hosts.  Policy names round-trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "core/sched.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
#define MAXN		6
#define NONE		(-1)

/* A VM: policy, vcpus, memory, min_memory. */
#define VM(pol, v, m, min)	{ .policy = POLICY_##pol, .vcpus = (v), \
	.memory_mib = (m), .min_memory_mib = (min), .priority = 5, \
	.weight = 1 }
#define FIXED(v, m)		VM(FIXED, v, m, (m) / 2)

static void
assert_near(double got, double want, const char *what, size_t i, size_t k)
{
	if (isinf(want) ? got != want : !(fabs(got - want) < 1e-6))
		fail_msg("%s, case %zu, [%zu]: got %.9g, want %.9g", what, i, k,
		    got, want);
}

static void
test_policy_names(void **unused)
{
	static const char *const names[SCHED_NPOLICIES] = {
		"fcfs", "sjf", "priority", "rr",
	};

	(void)unused;
	for (int i = 0; i < SCHED_NPOLICIES; i++) {
		assert_int_equal(sched_policy_parse(names[i]), i);
		assert_string_equal(sched_policy_name((enum sched_policy)i),
		    names[i]);
	}
	assert_int_equal(sched_policy_parse("FCFS"), -1);
	assert_int_equal(sched_policy_parse("round-robin"), -1);
	assert_int_equal(sched_policy_parse("prio"), -1);
	assert_int_equal(sched_policy_parse(""), -1);
	assert_int_equal(sched_policy_parse("invalid"), -1);
	assert_int_equal(sched_policy_parse(NULL), -1);
	assert_string_equal(sched_policy_name(SCHED_NPOLICIES), "invalid");
}

/*
 * One scrambled queue for every policy: id, arrival, runtime, priority.
 * By arrival: 5 2 4 3 6 1.  Runtimes 10 (4, 3), 30 (2, 6), none (5, 1).
 * Priorities 10 (2, 6), 5 (5, 4, 1), 1 (3).
 */
static const struct sched_item scrambled[] = {
	{ 1, 5, 0, 5 },
	{ 2, 1, 30, 10 },
	{ 3, 3, 10, 1 },
	{ 4, 2, 10, 5 },
	{ 5, 0, 0, 5 },
	{ 6, 4, 30, 10 },
};

/*
 * Real clocks: large arrivals, one before the epoch, differences beyond
 * the range of an int.
 */
static const struct sched_item clocks[] = {
	{ 1, 5000000000LL, 600, 3 },
	{ 2, 1700000100, 0, 3 },
	{ 3, -5, 600, 9 },
	{ 4, 1700000200, 1, 3 },
};

static const struct {
	enum sched_policy	 p;
	const struct sched_item	*in;
	size_t			 n;
	int			 want[MAXN];
} orders[] = {
	{ SCHED_FCFS, scrambled, 6, { 5, 2, 4, 3, 6, 1 } },
	{ SCHED_RR, scrambled, 6, { 5, 2, 4, 3, 6, 1 } },
	{ SCHED_SJF, scrambled, 6, { 4, 3, 2, 6, 5, 1 } },
	{ SCHED_PRIORITY, scrambled, 6, { 2, 6, 5, 4, 1, 3 } },
	{ SCHED_FCFS, clocks, 4, { 3, 2, 4, 1 } },
	{ SCHED_RR, clocks, 4, { 3, 2, 4, 1 } },
	{ SCHED_SJF, clocks, 4, { 4, 3, 1, 2 } },
	{ SCHED_PRIORITY, clocks, 4, { 3, 2, 4, 1 } },
	{ SCHED_SJF, clocks + 1, 1, { 2 } },
	{ SCHED_PRIORITY, clocks, 0, { NONE } },
};

static void
test_order(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < NELEM(orders); i++) {
		struct sched_item q[MAXN + 1];

		memcpy(q, orders[i].in, orders[i].n * sizeof(q[0]));
		q[orders[i].n].id = NONE;	/* must stay untouched */
		sched_order(orders[i].p, q, orders[i].n);
		for (size_t k = 0; k < orders[i].n; k++)
			if (q[k].id != orders[i].want[k])
				fail_msg("%s, case %zu: [%zu] is %d, want %d",
				    sched_policy_name(orders[i].p), i, k,
				    q[k].id, orders[i].want[k]);
		assert_int_equal(q[orders[i].n].id, NONE);
	}
}

/* The items move whole: each id keeps its own fields. */
static void
test_order_keeps_items(void **unused)
{
	struct sched_item q[NELEM(scrambled)];

	(void)unused;
	memcpy(q, scrambled, sizeof(q));
	sched_order(SCHED_SJF, q, NELEM(q));
	for (size_t k = 0; k < NELEM(q); k++) {
		const struct sched_item *orig = &scrambled[q[k].id - 1];

		assert_int_equal(q[k].arrival, orig->arrival);
		assert_int_equal(q[k].runtime_s, orig->runtime_s);
		assert_int_equal(q[k].priority, orig->priority);
	}
}

static void
test_slice_end(void **unused)
{
	/* now + B / R. */
	static const struct {
		double	now, quantum, rate, want;
	} cases[] = {
		{ 0, 10, 2, 5 },
		{ 100, 10, 0.5, 120 },
		{ 7.5, 1, 4, 7.75 },
		{ 1e9, 30, 3, 1e9 + 10 },
		{ 42, 0, 1, 42 },
		{ 3, 2, 1, 5 },
		{ 0, 10, 0, INFINITY },
		{ 1e9, 0.001, 0, INFINITY },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++)
		assert_near(sched_slice_end(cases[i].now, cases[i].quantum,
		    cases[i].rate), cases[i].want, "slice end", i, 0);
}

static void
test_pick_victim(void **unused)
{
	static const struct {
		size_t	n;
		double	end[MAXN];
		int	preempt[MAXN];
		double	now;
		int	want;
	} cases[] = {
		/* All expired: the earliest. */
		{ 3, { 5, 3, 8 }, { 1, 1, 1 }, 10, 1 },
		/* The earliest may not be preempted. */
		{ 3, { 5, 3, 8 }, { 1, 0, 1 }, 10, 0 },
		/* Only 3 has expired. */
		{ 3, { 5, 3, 8 }, { 1, 1, 1 }, 4, 1 },
		/* Expired but not preemptible; the preemptible one not yet. */
		{ 3, { 5, 3, 8 }, { 0, 0, 1 }, 6, NONE },
		/* Nothing expired. */
		{ 3, { 5, 3, 8 }, { 1, 1, 1 }, 2, NONE },
		/* Nobody preemptible. */
		{ 3, { 5, 3, 8 }, { 0, 0, 0 }, 10, NONE },
		/* slice_end == now counts as expired. */
		{ 2, { 12, 10 }, { 1, 1 }, 10, 1 },
		/* A slice without end never expires. */
		{ 2, { INFINITY, 4 }, { 1, 1 }, 100, 1 },
		{ 1, { INFINITY }, { 1 }, 1e300, NONE },
		/* The last one. */
		{ 4, { 9, 7, 8, 6.5 }, { 1, 1, 1, 1 }, 9, 3 },
		{ 0, { 0 }, { 0 }, 10, NONE },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++) {
		int got = sched_pick_victim(cases[i].end, cases[i].preempt,
		    cases[i].n, cases[i].now);

		if (got != cases[i].want)
			fail_msg("victim %zu: got %d, want %d", i, got,
			    cases[i].want);
	}
}

static const struct alloc_host h300 = { 2, 300, 4.0, 1.0 };
static const struct alloc_host hbig = { 8, 4096, 4.0, 1.0 };
static const struct alloc_host hcpu = { 1, 4096, 2.0, 1.0 };

static const struct estimate_case {
	const struct alloc_host *host;
	size_t		 nrun;
	struct alloc_vm	 run[MAXN];
	double		 end[MAXN];
	size_t		 nq;
	struct alloc_vm	 queue[MAXN];
	long long	 runtime[MAXN];
	double		 now;
	double		 want[MAXN];
} estimates[] = {
	/*
	 * 0: 256 of 300 MiB used.  The first queued needs the VM ending at 10
	 * to go, runs 5, ends 15; the second waits for it (15), runs for
	 * ever; the third waits for the one ending at 20.
	 */
	{ &h300, 2, { FIXED(1, 128), FIXED(1, 128) }, { 20, 10 },
	  3, { FIXED(1, 128), FIXED(1, 128), FIXED(1, 128) }, { 5, 0, 7 }, 0,
	  { 10, 15, 20 } },
	/*
	 * 1: the same and three more.  The third (runtime 7) ends at 27,
	 * which lets the fourth in; the fifth (16) fits next to it at 27 and
	 * ends at 30, but its going leaves 256 + 128 > 300 with only VMs
	 * without end: the sixth can never be told.
	 */
	{ &h300, 2, { FIXED(1, 128), FIXED(1, 128) }, { 20, 10 },
	  6, { FIXED(1, 128), FIXED(1, 128), FIXED(1, 128), FIXED(1, 128),
	  FIXED(1, 16), FIXED(1, 128) }, { 5, 0, 7, 0, 3, 0 }, 0,
	  { 10, 15, 20, 27, 27, INFINITY } },
	/*
	 * 2: the first queued takes the place of the one ending at 10; then
	 * only VMs without declared runtime run.  The small third would fit
	 * (256 + 16) but waits behind the second.
	 */
	{ &h300, 2, { FIXED(1, 128), FIXED(1, 128) }, { INFINITY, 10 },
	  3, { FIXED(1, 128), FIXED(1, 128), FIXED(1, 16) }, { 0, 5, 5 }, 0,
	  { 10, INFINITY, INFINITY } },
	/* 3: everything fits: all at now. */
	{ &hbig, 1, { FIXED(2, 128) }, { 150 },
	  3, { FIXED(1, 128), FIXED(4, 1024), FIXED(2, 2048) }, { 0, 0, 0 },
	  100, { 100, 100, 100 } },
	/* 4: an overdue VM (end 40 < now 50) makes room at once, at now. */
	{ &h300, 1, { FIXED(1, 256) }, { 40 },
	  1, { FIXED(1, 128) }, { 10 }, 50, { 50 } },
	/*
	 * 5: three VMs of 100 end at 5, 8, 12.  200 MiB needs two gone (8),
	 * ends at 9; then 100 more needs one more gone: itself, at 9.
	 */
	{ &h300, 3, { FIXED(1, 100), FIXED(1, 100), FIXED(1, 100) },
	  { 12, 5, 8 },
	  2, { FIXED(1, 200), FIXED(1, 100) }, { 1, 0 }, 0, { 8, 9 } },
	/*
	 * 6: CPU-bound: 2 x 1.0 = 2 vCPUs, 2 reserved until 30.  The
	 * dynamic one reserves no CPU but waits in line.
	 */
	{ &hcpu, 1, { FIXED(2, 128) }, { 30 },
	  2, { FIXED(1, 128), VM(DYNAMIC, 4, 128, 64) }, { 10, 0 }, 0,
	  { 30, 30 } },
	/* 7: a dynamic VM reserves its floor only: 128 + 128 fits. */
	{ &h300, 1, { VM(DYNAMIC, 1, 256, 128) }, { INFINITY },
	  1, { FIXED(1, 128) }, { 0 }, 0, { 0 } },
	/* 8: a VM that could never fit the host blocks the rest. */
	{ &h300, 0, { { 0 } }, { 0 },
	  2, { FIXED(1, 512), FIXED(1, 64) }, { 1, 1 }, 0,
	  { INFINITY, INFINITY } },
	/* 9: nothing runs, all fit. */
	{ &h300, 0, { { 0 } }, { 0 },
	  2, { FIXED(1, 100), FIXED(1, 200) }, { 1, 1 }, 3, { 3, 3 } },
	/* 10: nothing queued. */
	{ &h300, 1, { FIXED(1, 128) }, { 1 }, 0, { { 0 } }, { 0 }, 0,
	  { 0 } },
};

static void
test_estimate(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < NELEM(estimates); i++) {
		const struct estimate_case *c = &estimates[i];
		struct alloc_vm run[MAXN];
		double end[MAXN], at[MAXN];

		memcpy(run, c->run, sizeof(run));
		memcpy(end, c->end, sizeof(end));
		for (size_t k = 0; k < MAXN; k++)
			at[k] = -1;
		sched_estimate(c->host, run, end, c->nrun, c->queue,
		    c->runtime, c->nq, c->now, at);
		for (size_t k = 0; k < c->nq; k++)
			assert_near(at[k], c->want[k], "estimate", i, k);
		for (size_t k = c->nq; k < MAXN; k++)
			assert_near(at[k], -1, "estimate beyond nq", i, k);
		/* run[] and end[] are the caller's, unchanged. */
		assert_memory_equal(run, c->run, sizeof(run));
		assert_memory_equal(end, c->end, sizeof(end));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_names),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_order_keeps_items),
		cmocka_unit_test(test_slice_end),
		cmocka_unit_test(test_pick_victim),
		cmocka_unit_test(test_estimate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
