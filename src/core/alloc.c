/*
 * alloc.c - entitlements, water-filling and admission.  No I/O; the
 * daemon's scheduler glue and the unit tests are the callers.
 */
#include "alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPS	1e-9

static const char *const policy_names[] = { "fixed", "dynamic", "hybrid" };

int
alloc_policy_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (s && strcmp(s, policy_names[i]) == 0)
			return i;
	return -1;
}

const char *
alloc_policy_name(enum alloc_policy p)
{
	return (unsigned)p < 3 ? policy_names[p] : "invalid";
}

double
alloc_entitlement(const struct alloc_vm *vm, double request)
{
	return request * (vm->priority / 10.0) * vm->weight;
}

double
alloc_reserved_memory(const struct alloc_vm *vm)
{
	return vm->policy == POLICY_FIXED ? vm->memory_mib : vm->min_memory_mib;
}

double
alloc_reserved_cpus(const struct alloc_vm *vm)
{
	return vm->policy == POLICY_FIXED ? vm->vcpus : 0;
}

void
alloc_waterfill(double capacity, const double *w, const double *lo,
    const double *hi, double *out, size_t n)
{
	double floors = 0, left;
	char *full;

	for (size_t i = 0; i < n; i++)
		floors += lo[i];
	/* Floors beyond capacity: everyone gets the same fraction of his. */
	if (floors > capacity) {
		for (size_t i = 0; i < n; i++)
			out[i] = floors > 0 ? lo[i] * capacity / floors : 0;
		return;
	}
	if ((full = calloc(n ? n : 1, 1)) == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		out[i] = lo[i];
		full[i] = hi[i] - lo[i] <= EPS || w[i] <= 0;
	}
	left = capacity - floors;
	/*
	 * Raise the water level: each unsaturated claim gets left x w / sum
	 * w, capped at its hi; what the capped ones could not take is shared
	 * again.  At most n rounds, as each round saturates one claim or
	 * spends everything.
	 */
	while (left > EPS) {
		double sumw = 0, level = INFINITY;
		for (size_t i = 0; i < n; i++)
			if (!full[i])
				sumw += w[i];
		if (sumw <= 0)
			break;
		/* The level at which the first claim saturates. */
		for (size_t i = 0; i < n; i++)
			if (!full[i] && (hi[i] - out[i]) / w[i] < level)
				level = (hi[i] - out[i]) / w[i];
		if (level * sumw >= left - EPS) {
			for (size_t i = 0; i < n; i++)
				if (!full[i])
					out[i] += left * w[i] / sumw;
			left = 0;
			break;
		}
		for (size_t i = 0; i < n; i++) {
			if (full[i])
				continue;
			out[i] += level * w[i];
			left -= level * w[i];
			if (hi[i] - out[i] <= EPS) {
				out[i] = hi[i];
				full[i] = 1;
			}
		}
	}
	free(full);
}

void
alloc_divide(const struct alloc_host *h, struct alloc_vm *vms, size_t n)
{
	double *w, *lo, *hi, *out;

	if (n == 0)
		return;
	w = calloc(n, sizeof(double));
	lo = calloc(n, sizeof(double));
	hi = calloc(n, sizeof(double));
	out = calloc(n, sizeof(double));
	if (!w || !lo || !hi || !out)
		abort();

	for (size_t i = 0; i < n; i++) {
		w[i] = alloc_entitlement(&vms[i], vms[i].vcpus);
		lo[i] = 0;
		hi[i] = vms[i].vcpus;
	}
	alloc_waterfill(h->cpus, w, lo, hi, out, n);
	for (size_t i = 0; i < n; i++)
		vms[i].cpu = out[i];

	for (size_t i = 0; i < n; i++) {
		w[i] = alloc_entitlement(&vms[i], vms[i].memory_mib);
		lo[i] = alloc_reserved_memory(&vms[i]);
		hi[i] = vms[i].memory_mib;
	}
	alloc_waterfill(h->memory_mib * h->memory_ratio, w, lo, hi, out, n);
	for (size_t i = 0; i < n; i++)
		vms[i].memory = out[i];

	free(w);
	free(lo);
	free(hi);
	free(out);
}

int
alloc_admit(const struct alloc_host *h, const struct alloc_vm *running,
    size_t n, const struct alloc_vm *cand, int *by_memory, char *buf,
    size_t len)
{
	double mem = 0, cpus = 0;
	double mem_cap = h->memory_mib * h->memory_ratio;
	double cpu_cap = h->cpus * h->cpu_ratio;

	for (size_t i = 0; i < n; i++) {
		mem += alloc_reserved_memory(&running[i]);
		cpus += alloc_reserved_cpus(&running[i]);
	}
	double need_mem = alloc_reserved_memory(cand);
	double need_cpus = alloc_reserved_cpus(cand);
	*by_memory = 0;
	if (mem + need_mem > mem_cap + EPS) {
		*by_memory = 1;
		snprintf(buf, len, "needs %.0f MiB, %.0f MiB free", need_mem,
		    mem_cap - mem > 0 ? mem_cap - mem : 0);
		return -1;
	}
	if (cpus + need_cpus > cpu_cap + EPS) {
		snprintf(buf, len, "needs %g vCPUs, %g free", need_cpus,
		    cpu_cap - cpus > 0 ? cpu_cap - cpus : 0);
		return -1;
	}
	snprintf(buf, len, "fits");
	return 0;
}

int
alloc_fits_host(const struct alloc_host *h, const struct alloc_vm *vm,
    char *buf, size_t len)
{
	if (vm->memory_mib > h->memory_mib * h->memory_ratio + EPS) {
		snprintf(buf, len, "asks for %.0f MiB; the host has %.0f MiB "
		    "(x %.2g overcommit)", vm->memory_mib, h->memory_mib,
		    h->memory_ratio);
		return -1;
	}
	if (vm->vcpus > h->cpus * h->cpu_ratio + EPS) {
		snprintf(buf, len, "asks for %g vCPUs; the host has %g CPUs "
		    "(x %.2g overcommit)", vm->vcpus, h->cpus, h->cpu_ratio);
		return -1;
	}
	return 0;
}
