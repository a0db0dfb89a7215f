/*
 * sched.c - the scheduler inside vmgrd.  It keeps no state of its own
 * beyond the policy: the queue is every VM in state queued (or paused by
 * the scheduler), in the policy's order (core/sched.c).  sched_kick() runs
 * whenever something changes (a start request, a VM that stops, a policy
 * switch, a PATCH, an rr timer): it admits queued VMs in order while they
 * fit (core/alloc.c), preempts under rr, divides the host among the
 * admitted VMs and pushes the result to cgroups and balloons.
 */
#include "daemon.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/qmp.h"

#define QUEUE_MAX	4096

/* A VM holds memory once its QEMU exists or is being spawned. */
static int
holds_memory(const struct vm *vm)
{
	return vm->pid > 0 || (vm->busy == OP_START && vm->state ==
	    VM_QUEUED);
}

/* ... and CPU unless it is paused. */
static int
holds_cpu(const struct vm *vm)
{
	return holds_memory(vm) && vm->state != VM_PAUSED;
}

static int
in_queue(const struct vm *vm)
{
	if (vm->busy != OP_NONE || vm_has(vm, VMF_CREATING))
		return 0;
	return vm->state == VM_QUEUED || (vm->state == VM_PAUSED &&
	    vm_has(vm, VMF_PREEMPTED));
}

/* The admitted VMs as allocation claims; paused ones claim no CPU. */
static size_t
holders(struct vm **vms, struct alloc_vm *a, size_t max)
{
	struct vm *vm;
	size_t n = 0;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
		/* A VM paused by the scheduler waits, but keeps its memory. */
		if (n == max || !holds_memory(vm) || (in_queue(vm) &&
		    vm->state != VM_PAUSED))
			continue;
		vm_to_alloc(vm, &a[n]);
		if (!holds_cpu(vm))
			a[n].vcpus = 0;
		if (vms)
			vms[n] = vm;
		n++;
	}
	return n;
}

static void
reallocate(void)
{
	static struct vm *vms[QUEUE_MAX];
	static struct alloc_vm a[QUEUE_MAX];
	size_t n = holders(vms, a, QUEUE_MAX);
	double now = now_mono();

	alloc_divide(&vmgrd->cap, a, n);
	for (size_t i = 0; i < n; i++) {
		struct vm *vm = vms[i];
		const struct vm_spec *s = &vm->spec;
		vm->alloc_cpu = a[i].cpu;
		vm->alloc_memory_mib = a[i].memory;
		vm->entitlement_cpu = alloc_entitlement(&a[i], s->vcpus);
		vm->quota_cpus = a[i].policy == POLICY_FIXED ? s->vcpus : 0;
		/*
		 * QEMU itself needs memory beyond the guest's; while it
		 * writes a file (a save, a snapshot, a backup, a migration),
		 * that file's page cache is charged to it as well.
		 */
		vm->limit_memory_mib = s->memory_mib + (strcmp(vmgrd->accel,
		    "kvm") == 0 ? 64 : 256) + (vm->busy == OP_SAVE ||
		    vm->busy == OP_MIGRATE || vm->storage != STORAGE_NONE ?
		    s->memory_mib : 0);
		if (vm->state == VM_RUNNING && vm->slice_end == 0)
			vm->slice_end = sched_slice_end(now, vmgrd->quantum_s,
			    vm->alloc_cpu);
		if (vm->pid > 0)
			cgroup_apply(vm);
		if (vm->pid > 0 && a[i].policy != POLICY_FIXED)
			vm_set_balloon(vm, (long long)(a[i].memory + 0.5));
	}
}

static void
rr_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sched_kick();
}

/* Under rr, wake up when the first running slice ends. */
static void
rr_arm(int queue_waiting)
{
	struct vm *vm;
	double first = INFINITY;

	if (vmgrd->sched_timer)
		evtimer_del(vmgrd->sched_timer);
	if (vmgrd->policy != SCHED_RR || !queue_waiting)
		return;
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (vm->state == VM_RUNNING && vm->spec.schedule.preemptible &&
		    vm->busy == OP_NONE && vm->slice_end > 0 &&
		    vm->slice_end < first)
			first = vm->slice_end;
	if (isinf(first))
		return;
	double d = first - now_mono();
	if (d < 0.01)
		d = 0.01;
	struct timeval tv = tv_of(d);
	if (vmgrd->sched_timer == NULL)
		vmgrd->sched_timer = evtimer_new(vmgrd->base, rr_timer, NULL);
	evtimer_add(vmgrd->sched_timer, &tv);
}

/* Preempt one running VM whose slice is over, if rr allows. */
static void
rr_preempt(int by_memory)
{
	static struct vm *vms[QUEUE_MAX];
	static double end[QUEUE_MAX];
	static int pre[QUEUE_MAX];
	struct vm *vm;
	size_t n = 0;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
		if (vm->busy != OP_NONE)
			return;	/* one preemption at a time */
		if (vm->state != VM_RUNNING || n == QUEUE_MAX)
			continue;
		vms[n] = vm;
		end[n] = vm->slice_end > 0 ? vm->slice_end : INFINITY;
		pre[n] = vm->spec.schedule.preemptible;
		n++;
	}
	int v = sched_pick_victim(end, pre, n, now_mono());
	if (v >= 0)
		vm_preempt(vms[v], by_memory);
}

static void
estimate(struct vm **queue, size_t nq)
{
	static struct alloc_vm run[QUEUE_MAX], q[QUEUE_MAX];
	static struct vm *rv[QUEUE_MAX];
	static double end[QUEUE_MAX], at[QUEUE_MAX];
	static long long rt[QUEUE_MAX];
	double now = (double)now_unix_ms() / 1000;
	size_t nrun = holders(rv, run, QUEUE_MAX);

	for (size_t i = 0; i < nrun; i++) {
		long long r = rv[i]->spec.schedule.expected_runtime_s;
		end[i] = r > 0 ? (double)rv[i]->started_at / 1000 + (double)r :
		    INFINITY;
	}
	for (size_t j = 0; j < nq; j++) {
		vm_to_alloc(queue[j], &q[j]);
		rt[j] = queue[j]->spec.schedule.expected_runtime_s;
	}
	sched_estimate(&vmgrd->cap, run, end, nrun, q, rt, nq, now, at);
	for (size_t j = 0; j < nq; j++)
		queue[j]->expected_admission = vmgrd->policy == SCHED_RR ?
		    INFINITY : at[j];
}

/* Admit what fits, in order; returns how many are still waiting. */
static size_t
admit_pass(int *head_by_memory)
{
	static struct sched_item items[QUEUE_MAX];
	static struct vm *vms[QUEUE_MAX], *waiting[QUEUE_MAX];
	static struct alloc_vm a[QUEUE_MAX];
	struct vm *vm;
	size_t nq = 0, nw = 0, nh;
	int blocked = 0, pos = 1;
	char why[128];

	TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
		if (!in_queue(vm) || nq == QUEUE_MAX)
			continue;
		items[nq] = (struct sched_item){ .id = (int)nq,
		    .arrival = vm->queue_seq,
		    .runtime_s = vm->spec.schedule.expected_runtime_s,
		    .priority = vm->spec.resources.priority };
		vms[nq++] = vm;
	}
	sched_order(vmgrd->policy, items, nq);
	nh = holders(NULL, a, QUEUE_MAX - 1);
	for (size_t i = 0; i < nq; i++) {
		struct alloc_vm cand;
		int by_mem = 0;
		vm = vms[items[i].id];
		vm_to_alloc(vm, &cand);
		/* A paused one holds its memory already: it needs CPU only. */
		if (vm->state == VM_PAUSED)
			cand.memory_mib = cand.min_memory_mib = 0;
		if (!blocked && alloc_admit(&vmgrd->cap, a, nh, &cand, &by_mem,
		    why, sizeof(why)) == 0) {
			vm->queue_pos = 0;
			vm->queue_reason[0] = '\0';
			if (vm_admit(vm) == 0) {
				if (nh < QUEUE_MAX - 1)
					a[nh++] = cand;
				continue;
			}
			if (!in_queue(vm))
				continue;	/* it failed for good */
			snprintf(why, sizeof(why), "its QEMU's monitor is not "
			    "connected yet");
		}
		if (!blocked) {
			blocked = 1;
			*head_by_memory = by_mem;
			snprintf(vm->queue_reason, sizeof(vm->queue_reason),
			    "%s", why);
		} else
			snprintf(vm->queue_reason, sizeof(vm->queue_reason),
			    "waiting behind %s", waiting[0]->spec.name);
		vm->queue_pos = pos++;
		waiting[nw++] = vm;
	}
	estimate(waiting, nw);
	return nw;
}

/* What scheduling costs vmgrd: passes and their CPU time (GET /v1/scheduler). */
static struct {
	long long	kicks;
	double		cpu_us;
} stats;

static double
thread_cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

void
sched_kick(void)
{
	static int kicking, again;
	size_t waiting;
	int by_memory = 0;

	if (kicking) {
		again = 1;
		return;
	}
	double t0 = thread_cpu_us();
	kicking = 1;
	do {
		again = 0;
		waiting = admit_pass(&by_memory);
	} while (again);
	reallocate();
	if (waiting && vmgrd->policy == SCHED_RR)
		rr_preempt(by_memory);
	rr_arm(waiting > 0);
	kicking = 0;
	stats.kicks++;
	stats.cpu_us += thread_cpu_us() - t0;
}

void
sched_init(void)
{
	char buf[64];

	if (db_setting_get(vmgrd->db, "policy", buf, sizeof(buf)) == 0 &&
	    sched_policy_parse(buf) >= 0 && vmgrd->policy == SCHED_NPOLICIES)
		vmgrd->policy = (enum sched_policy)sched_policy_parse(buf);
	if (vmgrd->policy == SCHED_NPOLICIES)
		vmgrd->policy = SCHED_FCFS;
	if (db_setting_get(vmgrd->db, "quantum_s", buf, sizeof(buf)) == 0 &&
	    vmgrd->quantum_s <= 0)
		vmgrd->quantum_s = atof(buf);
	if (vmgrd->quantum_s <= 0)
		vmgrd->quantum_s = 30;
	/* The VMs' lifecycle tells the scheduler, which is above it. */
	static const struct vm_hooks h = {
		.changed = sched_kick,
		.json = sched_vm_json,
	};
	vm_set_hooks(&h);
}

static json_t *
time_or_null(double unix_s)
{
	char buf[40];

	if (isinf(unix_s) || unix_s <= 0)
		return json_null();
	return json_string(fmt_time_ms((int64_t)(unix_s * 1000), buf,
	    sizeof(buf)));
}

void
sched_vm_json(const struct vm *vm, json_t *o)
{
	if (in_queue(vm) && vm->queue_pos > 0)
		json_object_set_new(o, "queue", json_pack("{s:i, s:s, s:o}",
		    "position", vm->queue_pos, "reason", vm->queue_reason,
		    "expected_admission", time_or_null(vm->expected_admission)));
	if (!holds_memory(vm) || in_queue(vm))
		return;
	json_t *a = json_pack("{s:f, s:f, s:f, s:i, s:b, s:o}",
	    "cpus", vm->alloc_cpu, "memory_mib", vm->alloc_memory_mib,
	    "entitlement", vm->entitlement_cpu,
	    "limit_memory_mib", vm->limit_memory_mib,
	    "enforced", vmgrd->enforced, "cgroup", cgroup_json(vm));
	if (vm->quota_cpus > 0)
		json_object_set_new(a, "quota_cpus", json_real(vm->quota_cpus));
	if (vm->balloon_mib > 0)
		json_object_set_new(a, "balloon_target_mib",
		    json_integer(vm->balloon_mib));
	if (vm->balloon_actual_mib > 0)
		json_object_set_new(a, "balloon_actual_mib",
		    json_integer(vm->balloon_actual_mib));
	if (vmgrd->policy == SCHED_RR && vm->slice_end > 0 &&
	    vm->spec.schedule.preemptible)
		json_object_set_new(a, "slice_left_s", json_real(
		    vm->slice_end - now_mono()));
	json_object_set_new(o, "allocation", a);
}

json_t *
sched_json(void)
{
	json_t *q = json_array(), *run = json_array();
	struct vm *vm;

	for (int pos = 1; ; pos++) {
		int found = 0;
		TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
			if (!in_queue(vm) || vm->queue_pos != pos)
				continue;
			json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:o, s:i, "
			    "s:I}", "name", vm->spec.name, "state",
			    vm_state_name(vm->state), "position", pos, "reason",
			    vm->queue_reason, "expected_admission",
			    time_or_null(vm->expected_admission), "priority",
			    vm->spec.resources.priority, "expected_runtime_s",
			    (json_int_t)vm->spec.schedule.expected_runtime_s);
			json_array_append_new(q, o);
			found = 1;
		}
		if (!found)
			break;
	}
	TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
		if (!holds_memory(vm) || in_queue(vm))
			continue;
		json_t *o = json_pack("{s:s, s:s, s:f, s:f, s:b}", "name",
		    vm->spec.name, "state", vm_state_name(vm->state), "cpus",
		    vm->alloc_cpu, "memory_mib", vm->alloc_memory_mib,
		    "preemptible", vm->spec.schedule.preemptible);
		if (vmgrd->policy == SCHED_RR && vm->slice_end > 0 &&
		    vm->spec.schedule.preemptible && vm->state == VM_RUNNING)
			json_object_set_new(o, "slice_left_s", json_real(
			    vm->slice_end - now_mono()));
		json_array_append_new(run, o);
	}
	return json_pack("{s:s, s:f, s:o, s:o, s:{s:I, s:f}}", "policy",
	    sched_policy_name(vmgrd->policy), "quantum_s", vmgrd->quantum_s,
	    "queue", q, "admitted", run, "stats", "passes",
	    (json_int_t)stats.kicks, "cpu_us_per_pass", stats.kicks ?
	    stats.cpu_us / (double)stats.kicks : 0.0);
}

json_t *
sched_host_json(void)
{
	static struct alloc_vm a[QUEUE_MAX];
	size_t n = holders(NULL, a, QUEUE_MAX);
	double rmem = 0, rcpu = 0, amem = 0, acpu = 0;
	struct vm *vm;

	for (size_t i = 0; i < n; i++) {
		rmem += alloc_reserved_memory(&a[i]);
		rcpu += alloc_reserved_cpus(&a[i]);
	}
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (holds_memory(vm) && !in_queue(vm)) {
			amem += vm->alloc_memory_mib;
			acpu += vm->alloc_cpu;
		}
	double mcap = vmgrd->cap.memory_mib * vmgrd->cap.memory_ratio;
	double ccap = vmgrd->cap.cpus * vmgrd->cap.cpu_ratio;
	return json_pack("{s:{s:f, s:f, s:f, s:f}, s:{s:f, s:f}, s:{s:f, s:f},"
	    " s:{s:f, s:f}, s:{s:b, s:s, s:s}}",
	    "capacity", "cpus", vmgrd->cap.cpus, "memory_mib",
	    vmgrd->cap.memory_mib, "cpu_ratio", vmgrd->cap.cpu_ratio,
	    "memory_ratio", vmgrd->cap.memory_ratio,
	    "reserved", "cpus", rcpu, "memory_mib", rmem,
	    "allocated", "cpus", acpu, "memory_mib", amem,
	    "free", "cpus", ccap - rcpu, "memory_mib", mcap - rmem,
	    "enforcement", "enforced", vmgrd->enforced, "mode",
	    vmgrd->cgroup_mode, "reason", vmgrd->enforce_reason);
}

int
sched_api_put(struct api_call *c)
{
	static const char *const keys[] = { "policy", "quantum_s", NULL };
	json_t *p, *qt, *body = c->body;
	int policy = vmgrd->policy;
	double quantum = vmgrd->quantum_s;
	char buf[32];

	if (body == NULL)
		return api_err(&c->err, 400, "missing_body", "PUT "
		    "/v1/scheduler needs {\"policy\": ..., \"quantum_s\": "
		    "...}");
	if (api_body_keys(&c->err, body, keys) < 0)
		return API_FAIL;
	if ((p = json_object_get(body, "policy")) != NULL &&
	    (policy = sched_policy_parse(json_string_value(p))) < 0)
		return api_err(&c->err, 422, "invalid_value", "policy must be "
		    "fcfs, sjf, priority or rr");
	if ((qt = json_object_get(body, "quantum_s")) != NULL) {
		if (!json_is_number(qt) || json_number_value(qt) < 0.1 ||
		    json_number_value(qt) > 86400)
			return api_err(&c->err, 422, "out_of_range",
			    "quantum_s must be a number of vCPU-seconds from "
			    "0.1 to 86400");
		quantum = json_number_value(qt);
	}
	snprintf(buf, sizeof(buf), "%g", quantum);
	if (db_setting_set(vmgrd->db, "policy", sched_policy_name(
	    (enum sched_policy)policy)) < 0 ||
	    db_setting_set(vmgrd->db, "quantum_s", buf) < 0)
		return api_err(&c->err, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
	if (policy != (int)vmgrd->policy || quantum != vmgrd->quantum_s)
		log_info("scheduler: policy %s, quantum %gs",
		    sched_policy_name((enum sched_policy)policy), quantum);
	vmgrd->policy = (enum sched_policy)policy;
	vmgrd->quantum_s = quantum;
	/* Slices start anew with the new quantum. */
	struct vm *vm;
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		vm->slice_end = 0;
	sched_kick();
	return api_ok(c, 200, sched_json());
}

int
sched_room(const struct alloc_vm *cand, char *why, size_t len)
{
	static struct alloc_vm a[QUEUE_MAX];
	size_t n = holders(NULL, a, QUEUE_MAX);
	int by_mem = 0;

	return alloc_admit(&vmgrd->cap, a, n, cand, &by_mem, why, len);
}
