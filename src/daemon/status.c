/*
 * status.c - what the whole daemon looks like from outside: GET /v1/host
 * (the host's facts, capacity and allocation, the scheduler, the monitor's
 * host figures, the API's connections) and GET /metrics (Prometheus text
 * format, version 0.0.4: the host, each VM's state and last sample, its
 * disks and NICs).  Above the scheduler, below the API: it reads every
 * layer and nothing calls it but api.c.
 */
#include "daemon.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <event2/buffer.h>

json_t *
host_json(void)
{
	struct utsname un;
	struct vm *vm;
	json_t *counts = json_object();
	long long total = host_meminfo_kib("MemTotal:");
	long long avail = host_meminfo_kib("MemAvailable:");
	int nvms = 0;

	for (int s = 0; s < VM_NSTATES; s++)
		if (s != VM_DELETED)
			json_object_set_new(counts, vm_state_name(s),
			    json_integer(0));
	TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
		json_t *c = json_object_get(counts, vm_state_name(vm->state));
		json_integer_set(c, json_integer_value(c) + 1);
		nvms++;
	}
	uname(&un);
	json_t *h = json_pack("{s:s, s:s, s:i, s:I, s:I, s:s, s:s, s:s, s:s, s:s,"
	    " s:s, s:s, s:s, s:i, s:o}",
	    "hostname", un.nodename,
	    "kernel", un.release,
	    "cpus", (int)sysconf(_SC_NPROCESSORS_ONLN),
	    "memory_mib", (json_int_t)(total / 1024),
	    "memory_available_mib", (json_int_t)(avail / 1024),
	    "accel", vmgrd->accel,
	    "accel_reason", vmgrd->accel_reason,
	    "qemu_version", vmgrd->qemu_version,
	    "qemu_binary", vmgrd->qemu_binary,
	    "cgroup_mode", vmgrd->cgroup_mode,
	    "state_dir", vmgrd->state_dir,
	    "vmgrd_version", VMGR_VERSION,
	    "host_id", host_id(),
	    "vms_total", nvms,
	    "vms", counts);
	json_t *sh = sched_host_json();
	json_object_update(h, sh);
	json_decref(sh);
	sh = monitor_host_json();
	json_object_update(h, sh);
	json_decref(sh);
	json_object_set_new(h, "scheduler", sched_json());
	json_object_set_new(h, "nat", nat_host_json());
	json_object_set_new(h, "switch", kswitch_host_json());
	json_object_set_new(h, "api", json_pack("{s:i, s:i}", "connections",
	    api_limit_count(vmgrd->api_limit), "max_connections", vmgrd->max_conns));
	return h;
}


static void
help(struct evbuffer *b, const char *name, const char *type, const char *text)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text,
	    name, type);
}

/* A label value as the exposition format wants it: \\, \" and \n. */
static void
label(struct evbuffer *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(b, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, s, 1);
	}
}

/* What the guest agents say: connected or not, and file systems' use. */
static void
guest_metrics(struct evbuffer *b)
{
	static const char *const key[2] = { "used_bytes", "total_bytes" };
	static const char *const name[2] = {
		"vmgr_vm_guest_filesystem_used_bytes",
		"vmgr_vm_guest_filesystem_size_bytes" };
	static const char *const text[2] = {
		"Bytes in use on a file system of the guest, as its agent says.",
		"Size of a file system of the guest, as its agent says." };
	struct vm *vm;
	int any = 0;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
		if (vm->pid <= 0 || !vm->spec.agent.enabled)
			continue;
		if (!any++)
			help(b, "vmgr_vm_guest_agent_connected", "gauge",
			    "1 when the VM's guest agent answers.");
		evbuffer_add_printf(b, "vmgr_vm_guest_agent_connected{vm=\"%s\"}"
		    " %d\n", vm->spec.name, agent_ready(vm));
	}
	for (int k = 0; k < 2; k++) {
		any = 0;
		TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
			json_t *f;
			size_t i;
			if (vm->pid <= 0)
				continue;
			json_array_foreach(json_object_get(vm->guest,
			    "filesystems"), i, f) {
				json_t *v = json_object_get(f, key[k]);
				const char *mp = json_string_value(
				    json_object_get(f, "mountpoint"));
				if (!json_is_integer(v) || mp == NULL)
					continue;
				if (!any++)
					help(b, name[k], "gauge", text[k]);
				evbuffer_add_printf(b, "%s{vm=\"%s\",mountpoint="
				    "\"", name[k], vm->spec.name);
				label(b, mp);
				evbuffer_add_printf(b, "\"} %lld\n", (long long)
				    json_integer_value(v));
			}
		}
	}
}

/* The host's lines. */
static void
metrics_host(struct evbuffer *b)
{
	json_t *h = host_json();

#define N(o, k) json_number_value(json_object_get(o, k))
	help(b, "vmgr_host_cpus", "gauge", "CPUs of the host.");
	evbuffer_add_printf(b, "vmgr_host_cpus %g\n", N(h, "cpus"));
	help(b, "vmgr_host_memory_bytes", "gauge", "Memory of the host.");
	evbuffer_add_printf(b, "vmgr_host_memory_bytes %.0f\n",
	    N(h, "memory_mib") * 1048576);
	help(b, "vmgr_host_memory_available_bytes", "gauge",
	    "Memory available on the host.");
	evbuffer_add_printf(b, "vmgr_host_memory_available_bytes %.0f\n",
	    N(h, "memory_available_mib") * 1048576);
	help(b, "vmgr_host_cpu_ratio", "gauge",
	    "Share of the host's CPU time in use, 0 to 1.");
	evbuffer_add_printf(b, "vmgr_host_cpu_ratio %.4f\n",
	    monitor_host_cpu_pct() / 100);
	json_t *ms = monitor_host_json();
	if (json_object_get(ms, "state_dir_free_bytes")) {
		help(b, "vmgr_host_state_dir_free_bytes", "gauge",
		    "Free space of the state dir's filesystem.");
		evbuffer_add_printf(b, "vmgr_host_state_dir_free_bytes %.0f\n",
		    N(ms, "state_dir_free_bytes"));
	}
	json_decref(ms);
	help(b, "vmgr_scheduler_queue_length", "gauge",
	    "VMs waiting in the scheduler's queue.");
	evbuffer_add_printf(b, "vmgr_scheduler_queue_length %zu\n",
	    json_array_size(json_object_get(json_object_get(h, "scheduler"),
	    "queue")));
	json_decref(h);
#undef N
	uint64_t frames, wakeups;
	int ports;
	switch_stats(&frames, &wakeups, &ports);
	help(b, "vmgr_switch_frames_total", "counter", "Frames the switch of "
	    "isolated networks took from NICs.");
	evbuffer_add_printf(b, "vmgr_switch_frames_total %llu\n",
	    (unsigned long long)frames);
	help(b, "vmgr_switch_wakeups_total", "counter", "Times the switch "
	    "woke to move frames (frames per wakeup: its batching).");
	evbuffer_add_printf(b, "vmgr_switch_wakeups_total %llu\n",
	    (unsigned long long)wakeups);
	help(b, "vmgr_switch_ports", "gauge", "NICs connected to the switch.");
	evbuffer_add_printf(b, "vmgr_switch_ports %d\n", ports);
}

/* Each VM's state and size, and what its last sample says. */
static void
metrics_vms(struct evbuffer *b)
{
	struct vm *vm;

	help(b, "vmgr_vm_state", "gauge",
	    "1 for the state the VM is in, 0 for the others.");
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int st = 0; st < VM_NSTATES; st++)
			if (st != VM_DELETED)
				evbuffer_add_printf(b, "vmgr_vm_state{vm=\"%s\","
				    "state=\"%s\"} %d\n", vm->spec.name,
				    vm_state_name(st), (int)vm->state == st);
	help(b, "vmgr_vm_vcpus", "gauge", "vCPUs the VM is given.");
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		evbuffer_add_printf(b, "vmgr_vm_vcpus{vm=\"%s\"} %d\n",
		    vm->spec.name, vm->spec.vcpus);
	help(b, "vmgr_vm_memory_bytes", "gauge", "Memory the VM is given.");
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		evbuffer_add_printf(b, "vmgr_vm_memory_bytes{vm=\"%s\"} %lld\n",
		    vm->spec.name, (long long)vm->spec.memory_mib << 20);

	/* Per sample: only for VMs that have one, never a made-up zero. */
	static const struct {
		const char *name, *type, *help;
	} m[] = {
		{ "vmgr_vm_cpu_seconds_total", "counter",
		  "CPU time QEMU used for the VM (all threads)." },
		{ "vmgr_vm_memory_rss_bytes", "gauge",
		  "Resident memory of the VM's QEMU." },
		{ "vmgr_vm_balloon_actual_bytes", "gauge",
		  "Memory the guest has after its balloon." },
	};
	for (size_t k = 0; k < 3; k++) {
		int any = 0;
		TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
			struct monitor_last s;
			if (monitor_last(vm, &s) < 0 || vm->pid <= 0 || (k == 2 &&
			    !s.balloon_mib))
				continue;
			if (!any++)
				help(b, m[k].name, m[k].type, m[k].help);
			if (k == 0)
				evbuffer_add_printf(b, "%s{vm=\"%s\"} %.3f\n",
				    m[k].name, vm->spec.name, s.cpu_s);
			else
				evbuffer_add_printf(b, "%s{vm=\"%s\"} %llu\n",
				    m[k].name, vm->spec.name, k == 1 ?
				    (unsigned long long)s.rss :
				    (unsigned long long)s.balloon_mib << 20);
		}
	}
}

/* Each VM's disks and NICs. */
static void
metrics_devices(struct evbuffer *b)
{
	struct vm *vm;

	static const struct {
		const char *name, *key, *help;
	} d[] = {
		{ "vmgr_vm_disk_read_bytes_total", "read_bytes",
		  "Bytes the guest read from the disk." },
		{ "vmgr_vm_disk_write_bytes_total", "write_bytes",
		  "Bytes the guest wrote to the disk." },
		{ "vmgr_vm_disk_read_ops_total", "read_ops",
		  "Read requests of the guest." },
		{ "vmgr_vm_disk_write_ops_total", "write_ops",
		  "Write requests of the guest." },
	};
	for (size_t k = 0; k < 4; k++) {
		int any = 0;
		TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
			json_t *disk;
			size_t i;
			if (vm->pid <= 0 || monitor_disks(vm) == NULL)
				continue;
			json_array_foreach(monitor_disks(vm), i, disk) {
				if (!any++)
					help(b, d[k].name, "counter", d[k].help);
				evbuffer_add_printf(b, "%s{vm=\"%s\",disk=\"%s\"} "
				    "%lld\n", d[k].name, vm->spec.name,
				    json_string_value(json_object_get(disk,
				    "disk")), (long long)json_integer_value(
				    json_object_get(disk, d[k].key)));
			}
		}
	}
	static const struct {
		const char *name, *help;
		int which;
	} nm[] = {
		{ "vmgr_vm_nic_receive_bytes_total", "Bytes delivered to the "
		  "guest's NIC.", 0 },
		{ "vmgr_vm_nic_transmit_bytes_total", "Bytes the guest's NIC "
		  "sent.", 1 },
		{ "vmgr_vm_nic_receive_packets_total", "Frames delivered to the "
		  "NIC.", 2 },
		{ "vmgr_vm_nic_transmit_packets_total", "Frames the NIC sent.",
		  3 },
		{ "vmgr_vm_nic_spoofed_frames_total", "Frames the switch "
		  "dropped because their source was not the NIC's MAC.", 4 },
		{ "vmgr_vm_nic_dropped_frames_total", "Frames the switch "
		  "dropped because the NIC's queue was full.", 5 },
	};
	for (size_t k = 0; k < sizeof(nm) / sizeof(nm[0]); k++) {
		int any = 0;
		TAILQ_FOREACH(vm, &vmgrd->vms, entry)
			for (int i = 0; i < vm->spec.nnics; i++) {
				if (vm->pid <= 0 || strcmp(vm->spec.nics[i].network,
				    "nat") == 0)
					continue;
				uint64_t c[NIC_NCOUNTERS];
				net_nic_counters(vm, i, c);
				if (c[nm[k].which] == NIC_UNCOUNTED)
					continue;
				if (!any++)
					help(b, nm[k].name, "counter", nm[k].help);
				evbuffer_add_printf(b, "%s{vm=\"%s\",nic=\"%d\","
				    "network=\"%s\"} %llu\n", nm[k].name,
				    vm->spec.name, i, vm->spec.nics[i].network,
				    (unsigned long long)c[nm[k].which]);
			}
	}
	guest_metrics(b);
}

/* Migrations to and from this host, and what the last one out cost. */
static void
metrics_migrations(struct evbuffer *b)
{
	json_t *o = migrate_metrics(), *v, *last;
	size_t i;

	help(b, "vmgr_migrations", "gauge", "Migrations this host took part "
	    "in, by role (out: the source, in: the destination) and state.");
	json_array_foreach(json_object_get(o, "count"), i, v)
		evbuffer_add_printf(b, "vmgr_migrations{role=\"%s\",state="
		    "\"%s\"} %lld\n", json_string_value(json_object_get(v,
		    "role")), json_string_value(json_object_get(v, "state")),
		    (long long)json_integer_value(json_object_get(v, "n")));
	if ((last = json_object_get(o, "last")) != NULL) {
		static const char *const f[][3] = {
			{ "downtime_ms", "vmgr_migration_last_downtime_seconds",
			  "QEMU's downtime of the last migration out." },
			{ "switchover_ms", "vmgr_migration_last_switchover_seconds",
			  "The guest's stop here to its run there, last migration." },
			{ "total_ms", "vmgr_migration_last_total_seconds",
			  "The last migration out, from start to end." },
		};
		for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
			help(b, f[k][1], "gauge", f[k][2]);
			evbuffer_add_printf(b, "%s %.3f\n", f[k][1],
			    json_number_value(json_object_get(last, f[k][0])) /
			    1000);
		}
		help(b, "vmgr_migration_last_bytes", "gauge", "Bytes the last "
		    "migration out moved, by stream.");
		evbuffer_add_printf(b, "vmgr_migration_last_bytes{stream=\"disk\"}"
		    " %lld\nvmgr_migration_last_bytes{stream=\"memory\"} %lld\n",
		    (long long)json_integer_value(json_object_get(last,
		    "disk_bytes")), (long long)json_integer_value(
		    json_object_get(last, "memory_bytes")));
	}
	json_decref(o);
}

int
status_metrics(struct api_call *c)
{
	struct evbuffer *b = evbuffer_new();

	metrics_host(b);
	metrics_vms(b);
	metrics_devices(b);
	metrics_migrations(b);
	return api_ok_text(c, "text/plain; version=0.0.4; charset=utf-8", b);
}
