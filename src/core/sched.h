/*
 * sched.h - the scheduler's pure parts (DESIGN.md, "Scheduler"): the queue
 * order of each policy, the round-robin slice T_next = T_now + B / R, the
 * choice of whom to preempt, and an estimate of when each queued VM will
 * be admitted.  The daemon (daemon/sched.c) owns timers and QEMU; this
 * file only decides.
 */
#ifndef VMGR_SCHED_H
#define VMGR_SCHED_H

#include <stddef.h>

#include "alloc.h"

enum sched_policy { SCHED_FCFS, SCHED_SJF, SCHED_PRIORITY, SCHED_RR,
	SCHED_NPOLICIES };

struct sched_item {
	int		id;		/* the caller's */
	long long	arrival;	/* when it joined the queue (any order) */
	long long	runtime_s;	/* declared expected runtime; 0 = none */
	int		priority;	/* 1..10 */
};

int	sched_policy_parse(const char *);	/* -1 when unknown */
const char *sched_policy_name(enum sched_policy);

/*
 * Sort the queue into the policy's order: fcfs and rr by arrival; sjf by
 * declared runtime, shortest first, undeclared last; priority by priority,
 * highest first.  Ties go by arrival.
 */
void	sched_order(enum sched_policy, struct sched_item *, size_t n);

/*
 * The end of a slice: now + B / R, B the quantum in vCPU-seconds and R the
 * cores the VM currently gets.  INFINITY when R is 0.
 */
double	sched_slice_end(double now, double quantum, double rate);

/*
 * Whom to preempt so the queue can move: among the n running VMs, the
 * preemptible one whose slice ended first (slice_end <= now).  Its index,
 * or -1 when none may be preempted yet.
 */
int	sched_pick_victim(const double *slice_end, const int *preemptible,
	    size_t n, double now);

/*
 * When will each queued VM (in queue order) be admitted?  Simulates the
 * queue with head-of-line order: running VM i ends at end[i] (INFINITY when
 * it declared no runtime), and an admitted VM runs for its runtime[] (0 =
 * forever).  admit_at[j] is a time, or INFINITY when it cannot be known.
 * The run[] array is not changed.
 */
void	sched_estimate(const struct alloc_host *, const struct alloc_vm *run,
	    const double *end, size_t nrun, const struct alloc_vm *queue,
	    const long long *runtime, size_t nq, double now, double *admit_at);

#endif
