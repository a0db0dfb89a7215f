/*
 * alloc.h - host resources shared by policy (DESIGN.md, "Resource
 * allocation").  Pure: plain structs in, plain numbers out.  Each VM's
 * entitlement is e = R_requested x C_priority x S_weight, with C =
 * priority / 10; each resource is divided by weighted max-min fairness
 * (water-filling) with weights e, above each VM's guaranteed floor and never
 * above what it requested.  The daemon calls alloc_divide() whenever the set
 * of running VMs or their parameters change, and alloc_admit() before it
 * admits one more.
 */
#ifndef VMGR_ALLOC_H
#define VMGR_ALLOC_H

#include <stddef.h>

enum alloc_policy { POLICY_FIXED, POLICY_DYNAMIC, POLICY_HYBRID };

struct alloc_host {
	double	cpus;		/* cores vmgrd may use */
	double	memory_mib;
	double	cpu_ratio;	/* overcommit: fixed vCPUs <= cpus x ratio */
	double	memory_ratio;	/* reservations <= memory x ratio */
};

struct alloc_vm {
	/* in */
	enum alloc_policy policy;
	double	vcpus;
	double	memory_mib;
	double	min_memory_mib;	/* the floor of dynamic and hybrid */
	int	priority;	/* 1..10 */
	double	weight;		/* > 0 */
	/* out, from alloc_divide() */
	double	cpu;		/* cores */
	double	memory;		/* MiB */
};

/* "fixed", "dynamic", "hybrid"; -1 for anything else. */
int	alloc_policy_parse(const char *);
const char *alloc_policy_name(enum alloc_policy);

/* e for a resource request r: r x priority/10 x weight. */
double	alloc_entitlement(const struct alloc_vm *, double request);

/* What admission reserves: the full request for fixed, the floor else. */
double	alloc_reserved_memory(const struct alloc_vm *);
double	alloc_reserved_cpus(const struct alloc_vm *);

/*
 * Divide the host among the n VMs: sets each vm's cpu and memory.  CPU:
 * the host's cores, weights e, caps vcpus, no floors.  Memory: every VM
 * first gets its reservation, then what is left of memory x ratio goes to
 * dynamic and hybrid VMs by weights e, capped at their request.
 */
void	alloc_divide(const struct alloc_host *, struct alloc_vm *vms, size_t n);

/*
 * Can `cand` run next to the n running VMs?  0 when it fits; -1 when not,
 * with why (e.g. "needs 256 MiB, 128 MiB free") in buf and *by_memory set
 * when memory (not CPU) is what is short.
 */
int	alloc_admit(const struct alloc_host *, const struct alloc_vm *running,
	    size_t n, const struct alloc_vm *cand, int *by_memory, char *buf,
	    size_t len);

/*
 * Could `vm` ever run on this host, alone?  0, or -1 with why in buf.
 * Used at create time, so that a VM that can never fit is refused at once.
 */
int	alloc_fits_host(const struct alloc_host *, const struct alloc_vm *,
	    char *buf, size_t len);

/*
 * Weighted max-min fair division of capacity among n claims with weights
 * w, floors lo and caps hi (lo <= hi); out[i] gets each share.  Floors are
 * met first (scaled down if they exceed capacity).  Exposed for tests.
 */
void	alloc_waterfill(double capacity, const double *w, const double *lo,
	    const double *hi, double *out, size_t n);

#endif
