/*
 * monitor.c - what every VM uses, sampled on a timer (default 1 s): CPU
 * time and RSS from /proc (no QEMU involved), disk counters from
 * query-blockstats (asynchronous; a QEMU that does not answer marks its
 * samples stale and holds up nobody), the balloon from BALLOON_CHANGE.
 * Each VM keeps an hour of samples in a ring; GET /v1/vms/NAME/stats,
 * GET /v1/stats and GET /metrics (status.c) read them.
 */
#include "daemon.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/qmp.h"

struct sample {
	int64_t		t_ms;
	uint64_t	cpu_ns;		/* QEMU's CPU time so far */
	uint64_t	rss;		/* bytes */
	uint64_t	rd_bytes, wr_bytes, rd_ops, wr_ops;	/* all disks */
	float		cpu_pct;	/* of one core, since the last sample */
	uint32_t	balloon_mib;	/* 0 = unknown */
	uint8_t		state;
	uint8_t		stale;		/* disk counters are not fresh */
	uint8_t		has_disk;
};

struct mon {
	int64_t		 period;	/* the rollup period being summed */
	double		 sum_cpu, sum_rss;
	int		 nsum;
	struct sample	*ring;
	size_t		 cap, head, n;	/* head: next slot */
	json_t		*disks;		/* the last query-blockstats, per disk */
	uint64_t	 tot[4];	/* its totals */
	int64_t		 disks_at_ms;
	int		 pending;	/* a query-blockstats is out */
};

static struct {
	struct event	*timer;
	double		 interval;
	size_t		 ring_cap;
	uint64_t	 host_busy, host_total;	/* /proc/stat, last tick */
	double		 host_cpu_pct;
	long long	 ticks;
	double		 cpu_us;	/* spent in ticks */
	int64_t		 rollup_ms;	/* 60 s; VMGR_ROLLUP_SECONDS for tests */
	int64_t		 pruned_at;
	void		(*on_tick)(void);
} mon_g;

#define ROLLUP_KEEP_MS	(7LL * 86400 * 1000)	/* a week */

static struct mon *
mon_of(struct vm *vm)
{
	if (vm->mon == NULL && (vm->mon = calloc(1, sizeof(struct mon))) ==
	    NULL)
		fatal("%s", __func__);
	return vm->mon;
}

void
monitor_vm_free(struct vm *vm)
{
	if (vm->mon == NULL)
		return;
	free(vm->mon->ring);
	json_decref(vm->mon->disks);
	free(vm->mon);
	vm->mon = NULL;
}

static const struct sample *
last_sample(const struct vm *vm)
{
	const struct mon *m = vm->mon;

	if (m == NULL || m->n == 0)
		return NULL;
	return &m->ring[(m->head + m->cap - 1) % m->cap];
}

/* CPU time in ns: /proc/PID/schedstat is exact; stat's ticks otherwise. */
static int
proc_cpu_rss(pid_t pid, uint64_t *cpu_ns, uint64_t *rss)
{
	char path[64], buf[512];
	unsigned long long ns, pages;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	int ok = fscanf(f, "%llu", &ns) == 1;
	fclose(f);
	if (!ok)
		return -1;
	/*
	 * schedstat counts the main thread only; the vCPU threads are what
	 * burns, so sum the task directory.
	 */
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	ns = 0;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		unsigned long long t;
		if (de->d_name[0] == '.')
			continue;
		snprintf(buf, sizeof(buf), "%s/%s/schedstat", path, de->d_name);
		if ((f = fopen(buf, "re")) != NULL) {
			if (fscanf(f, "%llu", &t) == 1)
				ns += t;
			fclose(f);
		}
	}
	if (d)
		closedir(d);
	*cpu_ns = ns;
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	ok = fscanf(f, "%*u %llu", &pages) == 1;
	fclose(f);
	*rss = ok ? pages * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
	return 0;
}

static void
blockstats(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct vm *vm = arg;
	struct mon *m = vm->mon;
	json_t *disks, *d;
	size_t i;

	(void)q;
	if (m == NULL)
		return;
	m->pending = 0;
	if (result == NULL) {
		log_debug("%s: query-blockstats: %s", vm->spec.name, error);
		return;
	}
	disks = json_array();
	memset(m->tot, 0, sizeof(m->tot));
	json_array_foreach(result, i, d) {
		json_t *st = json_object_get(d, "stats");
		const char *node = json_string_value(json_object_get(d,
		    "node-name"));
		const char *dev = json_string_value(json_object_get(d, "qdev"));
		uint64_t v[4] = {
		    (uint64_t)json_integer_value(json_object_get(st, "rd_bytes")),
		    (uint64_t)json_integer_value(json_object_get(st, "wr_bytes")),
		    (uint64_t)json_integer_value(json_object_get(st,
			"rd_operations")),
		    (uint64_t)json_integer_value(json_object_get(st,
			"wr_operations")) };
		/* node-name is "diskN", the index of the spec's disk. */
		int idx = node && strncmp(node, "disk", 4) == 0 ? atoi(node + 4)
		    : -1;
		const char *vol = idx >= 0 && idx < vm->spec.ndisks ?
		    vm->spec.disks[idx].volume : NULL;
		json_array_append_new(disks, json_pack("{s:s, s:s?, s:I, s:I, "
		    "s:I, s:I}", "disk", node ? node : dev ? dev : "?",
		    "volume", vol, "read_bytes", (json_int_t)v[0],
		    "write_bytes", (json_int_t)v[1], "read_ops",
		    (json_int_t)v[2], "write_ops", (json_int_t)v[3]));
		for (int k = 0; k < 4; k++)
			m->tot[k] += v[k];
	}
	json_decref(m->disks);
	m->disks = disks;
	m->disks_at_ms = now_unix_ms();
}

static void
sample_vm(struct vm *vm, int64_t now)
{
	struct mon *m = mon_of(vm);
	const struct sample *prev = last_sample(vm);
	struct sample s = { .t_ms = now, .state = (uint8_t)vm->state };

	if (proc_cpu_rss(vm->pid, &s.cpu_ns, &s.rss) < 0)
		return;
	if (prev && prev->cpu_ns <= s.cpu_ns && now > prev->t_ms)
		s.cpu_pct = (float)((double)(s.cpu_ns - prev->cpu_ns) / 1e4 /
		    (double)(now - prev->t_ms));
	s.balloon_mib = (uint32_t)vm->balloon_actual_mib;
	s.has_disk = vm->spec.ndisks > 0 && m->disks != NULL;
	s.rd_bytes = m->tot[0];
	s.wr_bytes = m->tot[1];
	s.rd_ops = m->tot[2];
	s.wr_ops = m->tot[3];
	/* Fresh means answered within two intervals. */
	s.stale = vm->spec.ndisks > 0 && (double)(now - m->disks_at_ms) >
	    2000 * mon_g.interval;
	if (m->ring == NULL) {
		m->cap = mon_g.ring_cap;
		if ((m->ring = calloc(m->cap, sizeof(*m->ring))) == NULL)
			fatal("%s", __func__);
	}
	m->ring[m->head] = s;
	m->head = (m->head + 1) % m->cap;
	if (m->n < m->cap)
		m->n++;
	/*
	 * Per-period rollups go to SQLite for a week: the mean CPU and RSS of
	 * the period, the counters at its end.
	 */
	int64_t period = now / mon_g.rollup_ms;
	if (m->nsum && period != m->period) {
		if (db_rollup_add(vmgrd->db, vm->spec.name, m->period *
		    mon_g.rollup_ms, m->sum_cpu / m->nsum, (double)prev->cpu_ns /
		    1e9, (int64_t)(m->sum_rss / m->nsum), (int64_t)prev->rd_bytes,
		    (int64_t)prev->wr_bytes, prev->has_disk) < 0)
			log_warnx("%s: rollup: %s", vm->spec.name,
			    db_errmsg(vmgrd->db));
		m->sum_cpu = m->sum_rss = 0;
		m->nsum = 0;
	}
	m->period = period;
	m->sum_cpu += s.cpu_pct;
	m->sum_rss += (double)s.rss;
	m->nsum++;
	/* One query out at a time: a wedged QEMU gets no pile of them. */
	if (vm->spec.ndisks > 0 && !m->pending && vm->qmp &&
	    qmp_is_ready(vm->qmp)) {
		m->pending = 1;
		if (qmp_command(vm->qmp, "query-blockstats", NULL, blockstats,
		    vm) < 0)
			m->pending = 0;
	}
}

static void
sample_host(void)
{
	unsigned long long v[10] = { 0 };
	FILE *f = fopen("/proc/stat", "re");

	if (f == NULL)
		return;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
	    &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 5)
		return;
	uint64_t total = 0, idle = v[3] + v[4];
	for (int i = 0; i < 8; i++)
		total += v[i];
	uint64_t busy = total - idle;
	if (mon_g.host_total && total > mon_g.host_total)
		mon_g.host_cpu_pct = 100.0 * (double)(busy - mon_g.host_busy) /
		    (double)(total - mon_g.host_total);
	mon_g.host_busy = busy;
	mon_g.host_total = total;
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct timespec a, b;
	int64_t now = now_unix_ms();
	struct vm *vm;

	(void)fd;
	(void)what;
	(void)arg;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	sample_host();
	if (mon_g.on_tick)
		mon_g.on_tick();
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (vm->pid > 0)
			sample_vm(vm, now);
	if (now - mon_g.pruned_at > 3600 * 1000) {
		db_rollup_prune(vmgrd->db, now - ROLLUP_KEEP_MS);
		mon_g.pruned_at = now;
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	mon_g.ticks++;
	mon_g.cpu_us += (double)(b.tv_sec - a.tv_sec) * 1e6 +
	    (double)(b.tv_nsec - a.tv_nsec) / 1e3;
}

void
monitor_init(double interval, void (*on_tick)(void))
{
	struct timeval tv = tv_of(interval);

	const char *r = getenv("VMGR_ROLLUP_SECONDS");

	mon_g.interval = interval;
	mon_g.on_tick = on_tick;
	mon_g.ring_cap = (size_t)(3600 / interval) + 1;
	mon_g.rollup_ms = r && atoi(r) > 0 ? (int64_t)atoi(r) * 1000 : 60000;
	mon_g.timer = event_new(vmgrd->base, -1, EV_PERSIST, tick, NULL);
	event_add(mon_g.timer, &tv);
	sample_host();
}

/* ---- JSON ----------------------------------------------------------- */

static json_t *
sample_json(const struct vm *vm, const struct sample *s, int detail)
{
	char when[40];
	json_t *o = json_pack("{s:s, s:I, s:s, s:f, s:f, s:I}",
	    "time", fmt_time_ms(s->t_ms, when, sizeof(when)),
	    "time_ms", (json_int_t)s->t_ms,
	    "state", vm_state_name((enum vm_state)s->state),
	    "cpu_percent", (double)s->cpu_pct,
	    "cpu_seconds", (double)s->cpu_ns / 1e9,
	    "memory_rss_bytes", (json_int_t)s->rss);

	if (s->balloon_mib)
		json_object_set_new(o, "balloon_actual_bytes",
		    json_integer((json_int_t)s->balloon_mib << 20));
	if (s->has_disk) {
		json_object_set_new(o, "disk_read_bytes",
		    json_integer((json_int_t)s->rd_bytes));
		json_object_set_new(o, "disk_write_bytes",
		    json_integer((json_int_t)s->wr_bytes));
		json_object_set_new(o, "disk_read_ops",
		    json_integer((json_int_t)s->rd_ops));
		json_object_set_new(o, "disk_write_ops",
		    json_integer((json_int_t)s->wr_ops));
	}
	if (s->stale)
		json_object_set_new(o, "stale", json_true());
	if (detail) {
		json_object_set_new(o, "vcpus", json_integer(vm->spec.vcpus));
		json_object_set_new(o, "memory_mib",
		    json_integer(vm->spec.memory_mib));
		if (vm->mon && vm->mon->disks && s->has_disk)
			json_object_set(o, "disks", vm->mon->disks);
		/*
		 * NICs on vmgr networks are counted by vmgrd's switch; QEMU's
		 * user-mode NAT keeps no counters, so those NICs are absent.
		 */
		json_t *nics = json_array();
		for (int i = 0; i < vm->spec.nnics; i++) {
			uint64_t c[NIC_NCOUNTERS];
			if (strcmp(vm->spec.nics[i].network, "nat") == 0)
				continue;
			net_nic_counters(vm, i, c);
			json_t *nic = json_pack("{s:i, s:s, s:I, s:I, s:I, s:I}",
			    "nic", i, "network", vm->spec.nics[i].network,
			    "rx_bytes", (json_int_t)c[0], "tx_bytes",
			    (json_int_t)c[1], "rx_packets", (json_int_t)c[2],
			    "tx_packets", (json_int_t)c[3]);
			if (c[4] != NIC_UNCOUNTED)
				json_object_set_new(nic, "spoofed_frames",
				    json_integer((json_int_t)c[4]));
			if (c[5] != NIC_UNCOUNTED)
				json_object_set_new(nic, "dropped_frames",
				    json_integer((json_int_t)c[5]));
			json_array_append_new(nics, nic);
		}
		if (json_array_size(nics))
			json_object_set_new(o, "nics", nics);
		else
			json_decref(nics);
	}
	return o;
}

static void
rollup_json(int64_t t_ms, double cpu_pct, double cpu_s, int64_t rss,
    int64_t rd, int64_t wr, void *arg)
{
	char when[40];
	json_t *o = json_pack("{s:s, s:I, s:f, s:f, s:I}", "time",
	    fmt_time_ms(t_ms, when, sizeof(when)), "time_ms", (json_int_t)t_ms,
	    "cpu_percent", cpu_pct, "cpu_seconds", cpu_s, "memory_rss_bytes",
	    (json_int_t)rss);

	if (rd >= 0) {
		json_object_set_new(o, "disk_read_bytes", json_integer(rd));
		json_object_set_new(o, "disk_write_bytes", json_integer(wr));
	}
	json_array_append_new(arg, o);
}

json_t *
monitor_vm_json(const struct vm *vm, long history_s)
{
	const struct sample *s = last_sample(vm);
	json_t *o = json_pack("{s:s, s:s, s:f}", "name", vm->spec.name,
	    "state", vm_state_name(vm->state), "interval_s", mon_g.interval);

	if (history_s <= 0) {
		if (s) {
			json_t *d = sample_json(vm, s, 1);
			json_object_update(o, d);
			json_decref(d);
			/* The VM's state now, not at the sample. */
			json_object_set_new(o, "state", json_string(
			    vm_state_name(vm->state)));
			json_object_set_new(o, "running", json_boolean(
			    vm->pid > 0));
		}
		/* The guest's own view, where its agent gives it. */
		json_t *fs = json_object_get(vm->guest, "filesystems");
		if (json_array_size(fs))
			json_object_set_new(o, "guest_filesystems",
			    json_deep_copy(fs));
		return o;
	}
	json_t *arr = json_array();
	int64_t from = now_unix_ms() - (int64_t)history_s * 1000;
	if (history_s > 3600) {
		/* Beyond the hour in memory: the rollups in SQLite. */
		db_rollups(vmgrd->db, vm->spec.name, from, rollup_json, arr);
		json_object_set_new(o, "history_s", json_integer(history_s));
		json_object_set_new(o, "resolution_s", json_real(
		    (double)mon_g.rollup_ms / 1000));
		json_object_set_new(o, "samples", arr);
		return o;
	}
	const struct mon *m = vm->mon;
	for (size_t k = 0; m && k < m->n; k++) {
		const struct sample *x = &m->ring[(m->head + m->cap - m->n + k) %
		    m->cap];
		if (x->t_ms > from)
			json_array_append_new(arr, sample_json(vm, x, 0));
	}
	json_object_set_new(o, "history_s", json_integer(history_s));
	json_object_set_new(o, "samples", arr);
	return o;
}

json_t *
monitor_host_json(void)
{
	struct statvfs fs;
	double load[3] = { 0, 0, 0 };
	json_t *o;

	getloadavg(load, 3);
	o = json_pack("{s:f, s:[f, f, f], s:f, s:{s:I, s:f}}",
	    "cpu_percent", mon_g.host_cpu_pct,
	    "load", load[0], load[1], load[2],
	    "sample_interval_s", mon_g.interval,
	    "monitor", "samples", (json_int_t)mon_g.ticks,
	    "cpu_us_per_sample", mon_g.ticks ? mon_g.cpu_us /
	    (double)mon_g.ticks : 0.0);
	if (statvfs(vmgrd->state_dir, &fs) == 0) {
		json_object_set_new(o, "state_dir_free_bytes", json_integer(
		    (json_int_t)fs.f_bavail * (json_int_t)fs.f_frsize));
		json_object_set_new(o, "state_dir_size_bytes", json_integer(
		    (json_int_t)fs.f_blocks * (json_int_t)fs.f_frsize));
	}
	return o;
}

/* ---- what status.c reads -------------------------------------------- */

int
monitor_last(const struct vm *vm, struct monitor_last *out)
{
	const struct sample *s = last_sample(vm);

	if (s == NULL)
		return -1;
	out->cpu_s = (double)s->cpu_ns / 1e9;
	out->rss = s->rss;
	out->balloon_mib = s->balloon_mib;
	return 0;
}

json_t *
monitor_disks(const struct vm *vm)
{
	return vm->mon ? vm->mon->disks : NULL;
}

double
monitor_host_cpu_pct(void)
{
	return mon_g.host_cpu_pct;
}
