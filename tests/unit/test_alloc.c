/*
 * test_alloc.c - entitlements, water-filling, division and admission
 * (src/core/alloc.c).  Every expected number in the tables was worked out by
 * hand from alloc.h and DESIGN.md ("Resource allocation"), not copied from
 * a run; the arithmetic is in the comments next to each case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
#define MAXN		4

/* A VM: policy, vcpus, memory, min_memory, priority, weight. */
#define VM(pol, v, m, min, p, w)	{ .policy = POLICY_##pol, \
	.vcpus = (v), .memory_mib = (m), .min_memory_mib = (min), \
	.priority = (p), .weight = (w) }
#define FIXED(v, m)			VM(FIXED, v, m, (m) / 2, 5, 1)

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
	static const char *const names[] = { "fixed", "dynamic", "hybrid" };

	(void)unused;
	for (int i = 0; i < (int)NELEM(names); i++) {
		assert_int_equal(alloc_policy_parse(names[i]), i);
		assert_string_equal(alloc_policy_name((enum alloc_policy)i),
		    names[i]);
	}
	assert_int_equal(alloc_policy_parse("Fixed"), -1);
	assert_int_equal(alloc_policy_parse("fixe"), -1);
	assert_int_equal(alloc_policy_parse("fixed "), -1);
	assert_int_equal(alloc_policy_parse(""), -1);
	assert_int_equal(alloc_policy_parse("invalid"), -1);
	assert_int_equal(alloc_policy_parse(NULL), -1);
	assert_string_equal(alloc_policy_name((enum alloc_policy)3),
	    "invalid");
}

static void
test_entitlement(void **unused)
{
	/* e = request x priority/10 x weight. */
	static const struct {
		double	request;
		int	priority;
		double	weight, want;
	} cases[] = {
		{ 2, 5, 1, 1.0 },		/* 2 x 0.5 x 1 */
		{ 512, 10, 0.5, 256 },		/* 512 x 1 x 0.5 */
		{ 4, 1, 3, 1.2 },		/* 4 x 0.1 x 3 */
		{ 100, 7, 2.5, 175 },		/* 100 x 0.7 x 2.5 */
		{ 1024, 3, 0.25, 76.8 },	/* 1024 x 0.3 x 0.25 */
		{ 1, 10, 1000, 1000 },
		{ 0, 10, 1, 0 },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++) {
		struct alloc_vm vm = VM(DYNAMIC, 1, 128, 64, cases[i].priority,
		    cases[i].weight);

		assert_near(alloc_entitlement(&vm, cases[i].request),
		    cases[i].want, "entitlement", i, 0);
	}
}

static void
test_reserved(void **unused)
{
	struct alloc_vm f = VM(FIXED, 2, 512, 256, 5, 1);
	struct alloc_vm d = VM(DYNAMIC, 2, 512, 256, 5, 1);
	struct alloc_vm h = VM(HYBRID, 2, 512, 128, 5, 1);

	(void)unused;
	assert_near(alloc_reserved_memory(&f), 512, "fixed memory", 0, 0);
	assert_near(alloc_reserved_cpus(&f), 2, "fixed cpus", 0, 0);
	assert_near(alloc_reserved_memory(&d), 256, "dynamic memory", 0, 0);
	assert_near(alloc_reserved_cpus(&d), 0, "dynamic cpus", 0, 0);
	assert_near(alloc_reserved_memory(&h), 128, "hybrid memory", 0, 0);
	assert_near(alloc_reserved_cpus(&h), 0, "hybrid cpus", 0, 0);
}

static void
test_waterfill(void **unused)
{
	static const struct {
		double	capacity;
		size_t	n;
		double	w[MAXN], lo[MAXN], hi[MAXN], want[MAXN];
	} cases[] = {
		/* 0: equal weights, even split. */
		{ 9, 3, { 1, 1, 1 }, { 0 }, { 10, 10, 10 }, { 3, 3, 3 } },
		/* 1: proportional to weight: 3 x 1/3, 3 x 2/3. */
		{ 3, 2, { 1, 2 }, { 0 }, { 10, 10 }, { 1, 2 } },
		/* 2: the first capped at 2; its excess of 10/3 - 2 is shared. */
		{ 10, 3, { 1, 1, 1 }, { 0 }, { 2, 10, 10 }, { 2, 4, 4 } },
		/*
		 * 3: weights 1, 2, 3; the second saturates first (3 at level
		 * 1.5: 1.5, 3, 4.5, 3 left), then 3 shared 1:3: 2.25, 6.75.
		 */
		{ 12, 3, { 1, 2, 3 }, { 0 }, { 10, 3, 10 }, { 2.25, 3, 6.75 } },
		/* 4: floors first (4 + 0), then the 6 left by weight. */
		{ 10, 2, { 1, 1 }, { 4, 0 }, { 10, 10 }, { 7, 3 } },
		/* 5: floors 5 + 2, 13 left; the first caps at 8 (+3), 12. */
		{ 20, 2, { 1, 1 }, { 5, 2 }, { 8, 20 }, { 8, 12 } },
		/* 6: floors 4 + 8 = 12 over 6: each gets half of his. */
		{ 6, 2, { 1, 1 }, { 4, 8 }, { 10, 10 }, { 2, 4 } },
		/* 7: floors exactly the capacity: nothing more to share. */
		{ 6, 2, { 1, 5 }, { 2, 4 }, { 10, 10 }, { 2, 4 } },
		/* 8: more than all caps: each gets his cap, 82 unused. */
		{ 100, 3, { 1, 2, 3 }, { 0 }, { 5, 6, 7 }, { 5, 6, 7 } },
		/*
		 * 9: a tie: the first two saturate together at level 2
		 * (2, 2, 4 uses 8), the 2 left go to the third.
		 */
		{ 10, 3, { 1, 1, 2 }, { 0 }, { 2, 2, 10 }, { 2, 2, 6 } },
		/* 10: equal weights and caps: the same share each. */
		{ 5, 2, { 3, 3 }, { 0 }, { 4, 4 }, { 2.5, 2.5 } },
		/* 11: weight 0 gets its floor only. */
		{ 10, 2, { 0, 1 }, { 1, 0 }, { 10, 10 }, { 1, 9 } },
		/* 12: a claim with lo == hi stays there. */
		{ 10, 2, { 5, 1 }, { 3, 0 }, { 3, 10 }, { 3, 7 } },
		/* 13: no capacity. */
		{ 0, 2, { 1, 1 }, { 0 }, { 4, 4 }, { 0, 0 } },
		/* 14: one claim. */
		{ 7.5, 1, { 0.1 }, { 0 }, { 8 }, { 7.5 } },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++) {
		double out[MAXN];

		for (size_t k = 0; k < MAXN; k++)
			out[k] = -1;
		alloc_waterfill(cases[i].capacity, cases[i].w, cases[i].lo,
		    cases[i].hi, out, cases[i].n);
		for (size_t k = 0; k < cases[i].n; k++)
			assert_near(out[k], cases[i].want[k], "waterfill", i, k);
		for (size_t k = cases[i].n; k < MAXN; k++)
			assert_near(out[k], -1, "waterfill beyond n", i, k);
	}
}

static void
test_waterfill_empty(void **unused)
{
	double w = 1, lo = 0, hi = 5, out = -1;

	(void)unused;
	alloc_waterfill(10, &w, &lo, &hi, &out, 0);
	assert_near(out, -1, "no claims", 0, 0);
}

static const struct alloc_host host4 = { 4, 1000, 4.0, 1.0 };

static const struct divide_case {
	struct alloc_host host;
	size_t		  n;
	struct alloc_vm	  vm[MAXN];
	double		  cpu[MAXN], mem[MAXN];
} divides[] = {
	/*
	 * 0: CPU weights 2x0.5 = 1, 1, 4x1 = 4, sum 6: 4/6, 4/6, 16/6 (no
	 * cap reached).  Memory: floors 400 + 300 + 100, 200 left; the fixed
	 * one is full; weights 600x0.5 = 300 and 400x1 = 400: +600/7 and
	 * +800/7 (headroom 300 each, not reached).
	 */
	{ { 4, 1000, 4.0, 1.0 }, 3,
	  { VM(FIXED, 2, 400, 200, 5, 1), VM(DYNAMIC, 2, 600, 300, 5, 1),
	    VM(HYBRID, 4, 400, 100, 10, 1) },
	  { 4.0 / 6, 4.0 / 6, 16.0 / 6 },
	  { 400, 300 + 600.0 / 7, 100 + 800.0 / 7 } },
	/* 1: same requests, priority 10 against 5: 2:1 of 3 cpus, 600 MiB. */
	{ { 3, 600, 4.0, 1.0 }, 2,
	  { VM(DYNAMIC, 4, 1024, 0, 10, 1), VM(DYNAMIC, 4, 1024, 0, 5, 1) },
	  { 2, 1 }, { 400, 200 } },
	/* 2: priority 5 weight 2 is worth priority 10 weight 1. */
	{ { 3, 600, 4.0, 1.0 }, 2,
	  { VM(DYNAMIC, 4, 1024, 0, 5, 2), VM(HYBRID, 4, 1024, 0, 10, 1) },
	  { 1.5, 1.5 }, { 300, 300 } },
	/*
	 * 3: memory overcommit 1.5: 768 MiB; floors 256 + 256, the 256 left
	 * to the dynamic one.  CPU weights 1x0.5 = 0.5, 4x0.5x2 = 4: 2/9 and
	 * 16/9 of 2.
	 */
	{ { 2, 512, 4.0, 1.5 }, 2,
	  { VM(FIXED, 1, 256, 128, 5, 1), VM(DYNAMIC, 4, 1024, 256, 5, 2) },
	  { 2.0 / 9, 16.0 / 9 }, { 256, 512 } },
	/* 4: a roomy host: everyone gets what he asked for. */
	{ { 16, 4096, 4.0, 1.0 }, 3,
	  { VM(FIXED, 2, 512, 256, 1, 1), VM(DYNAMIC, 4, 1024, 512, 5, 1),
	    VM(HYBRID, 1, 256, 128, 10, 1000) },
	  { 2, 4, 1 }, { 512, 1024, 256 } },
	/*
	 * 5: hybrid floor 512 and dynamic floor 128, 384 left shared
	 * equally (same entitlement): 704 and 320.  CPU 1 and 1.
	 */
	{ { 2, 1024, 4.0, 1.0 }, 2,
	  { VM(HYBRID, 2, 1024, 512, 10, 1), VM(DYNAMIC, 2, 1024, 128, 10, 1) },
	  { 1, 1 }, { 704, 320 } },
	/*
	 * 6: CPU capped at vcpus: weights 1x1x10 = 10 and 4x1x1 = 4 of 4
	 * cpus would give the first 2.86; it is capped at 1 and the other
	 * gets the remaining 3.
	 */
	{ { 4, 1000, 4.0, 1.0 }, 2,
	  { VM(FIXED, 1, 100, 50, 10, 10), VM(FIXED, 4, 100, 50, 10, 1) },
	  { 1, 3 }, { 100, 100 } },
	/* 7: fixed reservations beyond memory (1024 > 512) scale down. */
	{ { 1, 512, 4.0, 1.0 }, 2,
	  { FIXED(1, 400), FIXED(1, 624) },
	  { 0.5, 0.5 }, { 200, 312 } },
};

static void
check_divide(const struct alloc_host *h, struct alloc_vm *vm, size_t n,
    const double *cpu, const double *mem, const char *what, size_t i)
{
	char buf[64];

	alloc_divide(h, vm, n);
	for (size_t k = 0; k < n; k++) {
		snprintf(buf, sizeof(buf), "%s cpu", what);
		assert_near(vm[k].cpu, cpu[k], buf, i, k);
		snprintf(buf, sizeof(buf), "%s memory", what);
		assert_near(vm[k].memory, mem[k], buf, i, k);
	}
}

static void
test_divide(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < NELEM(divides); i++) {
		struct alloc_vm vm[MAXN];

		memcpy(vm, divides[i].vm, sizeof(vm));
		for (size_t k = 0; k < MAXN; k++)
			vm[k].cpu = vm[k].memory = -1;
		check_divide(&divides[i].host, vm, divides[i].n,
		    divides[i].cpu, divides[i].mem, "divide", i);
	}
	/* No VMs: nothing to do, nothing touched. */
	alloc_divide(&host4, NULL, 0);
}

/* A third VM arrives and shares shrink; the first leaves and they grow. */
static void
test_divide_arrive_leave(void **unused)
{
	static const struct alloc_host h = { 2, 800, 4.0, 1.0 };
	static const struct alloc_vm v1 = VM(DYNAMIC, 2, 512, 128, 5, 1);
	static const struct alloc_vm v2 = VM(DYNAMIC, 2, 512, 128, 5, 1);
	static const struct alloc_vm v3 = VM(HYBRID, 1, 256, 128, 10, 1);
	struct alloc_vm vm[3];

	(void)unused;
	/* CPU weights 1 and 1 of 2; memory floors 256, 544 left: +272. */
	vm[0] = v1;
	vm[1] = v2;
	check_divide(&h, vm, 2, (double[]){ 1, 1 },
	    (double[]){ 400, 400 }, "two", 0);

	/*
	 * CPU weights 1, 1, 1x1 = 1: 2/3 each.  Memory floors 384, 416 left,
	 * weights 256 each; the third saturates at +128 (level 0.5, 384
	 * used), the 32 left split: 256 + 16 each for the first two.
	 */
	vm[2] = v3;
	check_divide(&h, vm, 3, (double[]){ 2.0 / 3, 2.0 / 3, 2.0 / 3 },
	    (double[]){ 272, 272, 256 }, "three", 0);

	/*
	 * The first leaves.  CPU weights 1 and 1, caps 2 and 1: 1 each.
	 * Memory floors 256, 544 left: both +128 (the second saturates at
	 * 256), then the first alone up to its request: 512.  32 unused.
	 */
	vm[0] = vm[1];
	vm[1] = vm[2];
	check_divide(&h, vm, 2, (double[]){ 1, 1 },
	    (double[]){ 512, 256 }, "two again", 0);
}

static const struct alloc_host hroom = { 2, 1024, 4.0, 1.0 };
static const struct alloc_host hover = { 2, 1024, 1.0, 1.5 };

static const struct admit_case {
	const struct alloc_host *host;
	size_t		 n;
	struct alloc_vm	 run[MAXN];
	struct alloc_vm	 cand;
	int		 rc, by_memory;
	const char	*msg;	/* exact, or a substring for CPU */
} admits[] = {
	/* 0 */ { &hroom, 0, { { 0 } }, FIXED(1, 512), 0, 0, NULL },
	/* 1: 768 + 512 > 1024. */
	{ &hroom, 1, { FIXED(2, 768) }, FIXED(1, 512), -1, 1,
	  "needs 512 MiB, 256 MiB free" },
	/* 2: full to the MiB. */
	{ &hroom, 2, { FIXED(2, 512), FIXED(2, 512) }, FIXED(1, 16), -1, 1,
	  "needs 16 MiB, 0 MiB free" },
	/* 3: already over (1024 + 256 > 1024, as after a ratio change). */
	{ &hroom, 2, { FIXED(1, 1024), VM(DYNAMIC, 1, 512, 256, 5, 1) },
	  VM(DYNAMIC, 1, 64, 16, 5, 1), -1, 1, "needs 16 MiB, 0 MiB free" },
	/* 4: vCPUs 4 + 3 + 2 = 9 > 2 x 4. */
	{ &hroom, 2, { FIXED(4, 128), FIXED(3, 128) }, FIXED(2, 128), -1, 0,
	  "vCPU" },
	/* 5: exactly 8. */
	{ &hroom, 2, { FIXED(4, 128), FIXED(2, 128) }, FIXED(2, 128), 0, 0,
	  NULL },
	/* 6: the dynamic one reserves only 256: 256 + 768 = 1024. */
	{ &hroom, 1, { VM(DYNAMIC, 1, 1024, 256, 5, 1) }, FIXED(1, 768), 0,
	  0, NULL },
	/* 7: one more MiB. */
	{ &hroom, 1, { VM(DYNAMIC, 1, 1024, 256, 5, 1) }, FIXED(1, 769), -1,
	  1, "needs 769 MiB, 768 MiB free" },
	/* 8: a dynamic candidate needs its floor only: 512 + 512. */
	{ &hroom, 1, { FIXED(1, 512) }, VM(DYNAMIC, 1, 2048, 512, 5, 1), 0,
	  0, NULL },
	/* 9: a hybrid's floor of 600 does not fit in 512. */
	{ &hroom, 1, { FIXED(1, 512) }, VM(HYBRID, 1, 2048, 600, 5, 1), -1,
	  1, "needs 600 MiB, 512 MiB free" },
	/* 10: a dynamic VM's vCPUs are not reserved: 0 + 8. */
	{ &hroom, 1, { VM(DYNAMIC, 8, 128, 64, 5, 1) }, FIXED(8, 128), 0, 0,
	  NULL },
	/* 11: nor a dynamic candidate's: 8 + 0. */
	{ &hroom, 1, { FIXED(8, 128) }, VM(DYNAMIC, 16, 128, 64, 5, 1), 0, 0,
	  NULL },
	/* 12: memory ratio 1.5: 1024 + 512 = 1536. */
	{ &hover, 1, { FIXED(1, 1024) }, FIXED(1, 512), 0, 0, NULL },
	/* 13 */
	{ &hover, 1, { FIXED(1, 1024) }, FIXED(1, 513), -1, 1,
	  "needs 513 MiB, 512 MiB free" },
	/* 14: CPU ratio 1.0: 2 + 1 > 2. */
	{ &hover, 1, { FIXED(2, 128) }, FIXED(1, 128), -1, 0, "vCPU" },
	/* 15: 1 + 1 <= 2. */
	{ &hover, 1, { FIXED(1, 128) }, FIXED(1, 128), 0, 0, NULL },
};

static void
test_admit(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < NELEM(admits); i++) {
		const struct admit_case *c = &admits[i];
		char buf[128];
		int by_memory = 7;
		int rc = alloc_admit(c->host, c->run, c->n, &c->cand,
		    &by_memory, buf, sizeof(buf));

		if (rc != c->rc)
			fail_msg("admit %zu: got %d (%s), want %d", i, rc,
			    rc ? buf : "", c->rc);
		if (by_memory != c->by_memory)
			fail_msg("admit %zu: by_memory %d, want %d", i,
			    by_memory, c->by_memory);
		if (c->msg == NULL)
			continue;
		if (c->by_memory)
			assert_string_equal(buf, c->msg);
		else if (strstr(buf, c->msg) == NULL)
			fail_msg("admit %zu: \"%s\" lacks \"%s\"", i, buf,
			    c->msg);
	}
}

static void
test_fits_host(void **unused)
{
	static const struct {
		const struct alloc_host *host;
		struct alloc_vm	 vm;
		const char	*msg;	/* NULL when it fits */
	} cases[] = {
		{ &hroom, FIXED(8, 1024), NULL },
		{ &hroom, FIXED(1, 1025), "1025 MiB" },
		{ &hroom, FIXED(9, 128), "9 vCPU" },
		{ &hroom, VM(HYBRID, 8, 1024, 512, 1, 1), NULL },
		{ &hroom, VM(DYNAMIC, 1, 4096, 512, 5, 1), "4096 MiB" },
		/* 1024 x 1.5 and 2 x 1.0. */
		{ &hover, FIXED(2, 1536), NULL },
		{ &hover, FIXED(1, 1537), "1537 MiB" },
		{ &hover, FIXED(3, 128), "3 vCPU" },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++) {
		char buf[128] = "";
		int rc = alloc_fits_host(cases[i].host, &cases[i].vm, buf,
		    sizeof(buf));

		if (cases[i].msg == NULL) {
			if (rc != 0)
				fail_msg("fits %zu refused: %s", i, buf);
			continue;
		}
		if (rc != -1)
			fail_msg("fits %zu accepted, want \"%s\"", i,
			    cases[i].msg);
		if (strstr(buf, cases[i].msg) == NULL)
			fail_msg("fits %zu: \"%s\" lacks \"%s\"", i, buf,
			    cases[i].msg);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_names),
		cmocka_unit_test(test_entitlement),
		cmocka_unit_test(test_reserved),
		cmocka_unit_test(test_waterfill),
		cmocka_unit_test(test_waterfill_empty),
		cmocka_unit_test(test_divide),
		cmocka_unit_test(test_divide_arrive_leave),
		cmocka_unit_test(test_admit),
		cmocka_unit_test(test_fits_host),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
