/*
 * net_bridge.c - bridge networks (root only): a Linux bridge with the
 * subnet's first address, a tap per NIC, and a dnsmasq of vmgrd's giving
 * each NIC its address by DHCP (pinned to its MAC).  Their set-up runs
 * `ip`, briefly and only when a network or a NIC comes or goes.
 */
#include "net_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

/* Run `ip ARGS...`; 0 on success, else -1 with its words in err. */
static int
run_ip(char *err, size_t errlen, char *const argv[])
{
	char out[512];

	if (proc_run_sync(argv, NULL, out, sizeof(out)) == 0)
		return 0;
	out[strcspn(out, "\n")] = '\0';
	snprintf(err, errlen, "ip %s %s: %s", argv[1], argv[2], out);
	return -1;
}

/* Whether dnsmasq has written its pid file: its signal handlers are set. */
static int
dnsmasq_ready(const struct net *n)
{
	char pidfile[PATH_MAX], *s;
	int ready;

	net_file(n, "dnsmasq.pid", pidfile, sizeof(pidfile));
	if ((s = read_file(pidfile, 64, NULL)) == NULL)
		return 0;
	ready = atoi(s) == (int)n->dnsmasq;
	free(s);
	return ready;
}

/*
 * Tell dnsmasq to reread its hosts file.  A SIGHUP that came before it
 * has set its handlers would end it (it did, on a loaded host, when a VM
 * was made right after its network): until then, try again every 100 ms.
 */
static void
dnsmasq_hup(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval tick = { 0, 100000 };
	struct net *n = arg;

	(void)fd;
	(void)what;
	if (n->dnsmasq <= 0)
		return;
	if (dnsmasq_ready(n)) {
		kill(n->dnsmasq, SIGHUP);
		return;
	}
	if (n->hup == NULL && (n->hup = evtimer_new(vmgrd->base, dnsmasq_hup,
	    n)) == NULL)
		return;
	evtimer_add(n->hup, &tick);
}

/* MAC,IP of every NIC on the network, for dnsmasq's dhcp-hostsfile. */
static void
write_hosts(struct net *n)
{
	char path[PATH_MAX], line[64];
	struct evbuffer *b = evbuffer_new();
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; i < vm->spec.nnics; i++)
			if (strcmp(vm->spec.nics[i].network, n->name) == 0) {
				snprintf(line, sizeof(line), "%s,%s\n",
				    vm->spec.nics[i].mac, vm->spec.nics[i].ip);
				evbuffer_add(b, line, strlen(line));
			}
	net_file(n, "hosts", path, sizeof(path));
	size_t len = evbuffer_get_length(b);
	if (write_file_atomic(path, len ? (const char *)evbuffer_pullup(b, -1) :
	    "", len, 0600) < 0)
		log_warn("%s: %s", __func__, path);
	evbuffer_free(b);
	if (n->dnsmasq > 0)
		dnsmasq_hup(-1, 0, n);	/* it rereads the hosts file */
}

/* A NIC joined or left a network: its DHCP server must know. */
void
net_hosts_changed(void)
{
	struct net *n;

	TAILQ_FOREACH(n, &nets, entry)
		if (is_bridge(n) && !n->adopted && !n->down[0])
			write_hosts(n);
}

int
net_vm_ready(const struct vm *vm, char *err, size_t errlen)
{
	for (int i = 0; i < vm->spec.nnics; i++) {
		struct net *n = net_find(vm->spec.nics[i].network);
		if (n && n->down[0]) {
			snprintf(err, errlen, "network %s is down: %.200s",
			    n->name, n->down);
			return -1;
		}
	}
	return 0;
}

static void
dnsmasq_stop(struct net *n)
{
	char pidfile[PATH_MAX], arg[PATH_MAX + 16], *s;
	const char *args[] = { arg, NULL };

	proc_watch_free(n->dnsmasq_watch);
	n->dnsmasq_watch = NULL;
	if (n->hup) {
		event_free(n->hup);
		n->hup = NULL;
	}
	net_file(n, "dnsmasq.pid", pidfile, sizeof(pidfile));
	snprintf(arg, sizeof(arg), "--pid-file=%s", pidfile);
	if (n->dnsmasq <= 0 && (s = read_file(pidfile, 64, NULL)) != NULL) {
		n->dnsmasq = (pid_t)atoi(s);
		free(s);
		/* Only ours: its command line names our pid file. */
		if (n->dnsmasq > 0 && !proc_cmdline_has(n->dnsmasq, args))
			n->dnsmasq = 0;
	}
	if (n->dnsmasq > 0 && kill(n->dnsmasq, SIGTERM) == 0) {
		/*
		 * Reap it if it is our child (it ends in a few ms; this runs
		 * only when a network goes or vmgrd starts).
		 */
		for (int i = 0; i < 100; i++) {
			pid_t r = waitpid(n->dnsmasq, NULL, WNOHANG);
			if (r != 0)
				break;
			usleep(10000);
		}
	}
	n->dnsmasq = 0;
	unlink(pidfile);
}

static void
dnsmasq_exited(pid_t pid, int status, void *arg)
{
	struct net *n = arg;
	char how[128];

	log_warnx("network %s: dnsmasq (pid %d) %s; see %s/net/%lld.dnsmasq.log",
	    n->name, (int)pid, proc_status_str(status, how, sizeof(how)),
	    vmgrd->state_dir, (long long)n->id);
	proc_watch_free(n->dnsmasq_watch);
	n->dnsmasq_watch = NULL;
	n->dnsmasq = 0;
}

static int
dnsmasq_start(struct net *n, char *err, size_t errlen)
{
	char gw[16], first[16], last[16], mask[16], range[80], pidf[PATH_MAX],
	    hosts[PATH_MAX], leases[PATH_MAX], logf[PATH_MAX];
	char a_range[PATH_MAX + 16], a_hosts[PATH_MAX + 20],
	    a_leases[PATH_MAX + 20], a_pid[PATH_MAX + 12], a_if[32],
	    a_listen[40];
	unsigned m = ~0u << (32 - n->prefix);

	ipv4(n->addr + 1, gw, sizeof(gw));
	ipv4(n->addr + 2, first, sizeof(first));
	ipv4((n->addr | ~m) - 1, last, sizeof(last));
	ipv4(m, mask, sizeof(mask));
	snprintf(range, sizeof(range), "%s,%s,%s,1h", first, last, mask);
	net_file(n, "dnsmasq.pid", pidf, sizeof(pidf));
	net_file(n, "hosts", hosts, sizeof(hosts));
	net_file(n, "leases", leases, sizeof(leases));
	net_file(n, "dnsmasq.log", logf, sizeof(logf));
	write_hosts(n);
	snprintf(a_range, sizeof(a_range), "--dhcp-range=%s", range);
	snprintf(a_hosts, sizeof(a_hosts), "--dhcp-hostsfile=%s", hosts);
	snprintf(a_leases, sizeof(a_leases), "--dhcp-leasefile=%s", leases);
	snprintf(a_pid, sizeof(a_pid), "--pid-file=%s", pidf);
	snprintf(a_if, sizeof(a_if), "--interface=%s", n->ifname);
	snprintf(a_listen, sizeof(a_listen), "--listen-address=%s", gw);
	/*
	 * --user=root: its files are in vmgrd's 0700 state dir.  It serves
	 * DHCP only (--port=0: no DNS), bound to the bridge alone.
	 */
	char *argv[] = { "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
	    "--user=root", "--log-facility=-", "--bind-interfaces",
	    "--except-interface=lo", "--port=0", "--dhcp-authoritative", a_if,
	    a_listen, a_range, a_hosts, a_leases, a_pid, NULL };
	struct proc_spawn sp = { .argv = argv, .logpath = logf };
	if ((n->dnsmasq = proc_spawn_detached(&sp)) < 0) {
		snprintf(err, errlen, "cannot run dnsmasq: %s", strerror(errno));
		n->dnsmasq = 0;
		return -1;
	}
	/* Reaped and reported when it ends, by the loop. */
	n->dnsmasq_watch = proc_watch_new(vmgrd->base, n->dnsmasq,
	    dnsmasq_exited, n);
	return 0;
}

/*
 * vmgr touches only interfaces it made, and knows them by the alias it
 * gives them ("vmgr STATE_DIR network ID", "... vm ID nic N"); a bridge the
 * user adopted is used as it is and never changed or deleted.
 */
void
if_alias(char *buf, size_t len, const char *what, int64_t id, int nic)
{
	if (nic < 0)
		snprintf(buf, len, "vmgr %s %s %lld", vmgrd->state_dir, what,
		    (long long)id);
	else
		snprintf(buf, len, "vmgr %s %s %lld nic %d", vmgrd->state_dir,
		    what, (long long)id, nic);
}

/* Whether /sys/class/net/IFNAME/SUB is there ("" for the interface). */
static int
if_has(const char *ifname, const char *sub)
{
	char path[80];

	snprintf(path, sizeof(path), "/sys/class/net/%s/%s", ifname, sub);
	return access(path, F_OK) == 0;
}

int
if_exists(const char *ifname)
{
	return if_has(ifname, "");
}

/* 1 when ifname carries alias: vmgr (this state dir's) made it. */
int
if_ours(const char *ifname, const char *alias)
{
	char path[80], *s;
	int ours;

	snprintf(path, sizeof(path), "/sys/class/net/%s/ifalias", ifname);
	if ((s = read_file(path, 512, NULL)) == NULL)
		return 0;
	s[strcspn(s, "\n")] = '\0';
	ours = strcmp(s, alias) == 0;
	free(s);
	return ours;
}

int
if_is_bridge(const char *ifname)
{
	return if_has(ifname, "bridge");
}

/* The nftables table of a network's NAT: vmgr's own, one per network. */
static void
nat_table(const struct net *n, char *buf, size_t len)
{
	snprintf(buf, len, "vmgr_%lld", (long long)n->id);
}

/*
 * NAT from the bridge's subnet to whatever the host routes it out of:
 * masquerade, guests' own connections let out and their answers in, and
 * nothing else in.  All in one table of vmgr's own, written whole in one
 * nft transaction (made anew if it is there), so no other table is ever
 * touched and no half of it is ever in force.  The host must forward
 * IPv4: vmgr turns it on (and says so), and leaves it on at the end, as
 * other users of the host may rely on it by then.
 */
static int
bridge_nat_up(struct net *n, char *err, size_t errlen)
{
	char table[32], cidr[32], rules[2048], out[512], *fwd;
	char *argv[] = { "nft", "-f", "-", NULL };

	nat_table(n, table, sizeof(table));
	cidr_str(n->addr, n->prefix, cidr, sizeof(cidr));
	snprintf(rules, sizeof(rules),
	    "table ip %s\n"
	    "delete table ip %s\n"
	    "table ip %s {\n"
	    "  chain postrouting {\n"
	    "    type nat hook postrouting priority srcnat; policy accept;\n"
	    "    ip saddr %s ip daddr != %s counter masquerade\n"
	    "  }\n"
	    "  chain forward {\n"
	    "    type filter hook forward priority filter; policy accept;\n"
	    "    iifname \"%s\" counter accept\n"
	    "    oifname \"%s\" ct state established,related counter accept\n"
	    "    oifname \"%s\" counter drop\n"
	    "  }\n"
	    "}\n", table, table, table, cidr, cidr, n->ifname, n->ifname,
	    n->ifname);
	if (proc_run_sync(argv, rules, out, sizeof(out)) < 0) {
		out[strcspn(out, "\n")] = '\0';
		snprintf(err, errlen, "nft (NAT of %s): %s", n->name, out[0] ?
		    out : "cannot run nft (Debian's package nftables)");
		return -1;
	}
	fwd = read_file("/proc/sys/net/ipv4/ip_forward", 16, NULL);
	if (fwd == NULL || fwd[0] != '1') {
		int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY |
		    O_CLOEXEC);
		if (fd < 0 || write(fd, "1\n", 2) != 2)
			log_warn("%s: net.ipv4.ip_forward", __func__);
		else
			log_info("network %s: NAT needs IPv4 forwarding: "
			    "net.ipv4.ip_forward is now 1", n->name);
		if (fd >= 0)
			close(fd);
	}
	free(fwd);
	return 0;
}

static void
bridge_nat_down(struct net *n)
{
	char table[32], out[512];
	char *argv[] = { "nft", "delete", "table", "ip", table, NULL };

	nat_table(n, table, sizeof(table));
	if (proc_run_sync(argv, NULL, out, sizeof(out)) < 0 &&
	    strstr(out, "No such file") == NULL)
		log_warnx("network %s: nft delete table ip %s: %.200s",
		    n->name, table, out);
}

/* The bridge with the gateway address, its DHCP server, its NAT. */
int
bridge_up(struct net *n, char *err, size_t errlen)
{
	char gw[40], ip[16], alias[256];

	if (n->adopted) {
		/* The user's bridge: its addresses and DHCP are its network's. */
		if (!if_exists(n->ifname) || !if_is_bridge(n->ifname)) {
			snprintf(err, errlen, "the adopted bridge %s is not there "
			    "(or is no bridge)", n->ifname);
			return -1;
		}
		return 0;
	}
	if_alias(alias, sizeof(alias), "network", n->id, -1);
	snprintf(gw, sizeof(gw), "%s/%d", ipv4(n->addr + 1, ip, sizeof(ip)),
	    n->prefix);
	char *add[] = { "ip", "link", "add", n->ifname, "type", "bridge", NULL };
	char *name[] = { "ip", "link", "set", "dev", n->ifname, "alias", alias,
	    NULL };
	char *addr[] = { "ip", "addr", "replace", gw, "dev", n->ifname, NULL };
	char *up[] = { "ip", "link", "set", n->ifname, "up", NULL };

	if (if_exists(n->ifname)) {
		if (!if_ours(n->ifname, alias)) {
			snprintf(err, errlen, "the host has an interface %s that "
			    "vmgr did not make; it is left alone", n->ifname);
			return -1;
		}
	} else if (run_ip(err, errlen, add) < 0 || run_ip(err, errlen,
	    name) < 0)
		return -1;
	if (run_ip(err, errlen, addr) < 0 || run_ip(err, errlen, up) < 0)
		return -1;
	if (n->nat && bridge_nat_up(n, err, errlen) < 0)
		return -1;
	dnsmasq_stop(n);	/* one left by an earlier vmgrd */
	return dnsmasq_start(n, err, errlen);
}

void
bridge_down(struct net *n)
{
	char err[256], alias[256];
	char *del[] = { "ip", "link", "del", n->ifname, NULL };

	dnsmasq_stop(n);
	if (n->nat)
		bridge_nat_down(n);
	if_alias(alias, sizeof(alias), "network", n->id, -1);
	if (n->adopted || !if_ours(n->ifname, alias))
		return;		/* not ours to delete */
	if (run_ip(err, sizeof(err), del) < 0)
		log_warnx("%s: %s", __func__, err);
}

/* Delete vm's tap for nic if it is there and ours. */
static void
tap_del(const struct vm *vm, int nic)
{
	char tap[16], alias[256], out[256];

	nic_tap_name(vm, nic, tap, sizeof(tap));
	if_alias(alias, sizeof(alias), "vm", vm->id, nic);
	if (!if_exists(tap) || !if_ours(tap, alias))
		return;
	char *del[] = { "ip", "link", "del", tap, NULL };
	proc_run_sync(del, NULL, out, sizeof(out));
}

/*
 * Create the taps of vm's bridge NICs (before QEMU opens them); taps[i]
 * is set for those NICs.  0, or -1 with err.
 */
int
net_taps_up(const struct vm *vm, char taps[][16], char *err, size_t errlen)
{
	for (int i = 0; i < vm->spec.nnics; i++) {
		struct net *n = net_find(vm->spec.nics[i].network);
		char alias[256], uid[16];
		taps[i][0] = '\0';
		if (n == NULL || !(is_bridge(n) || n->kernel))
			continue;
		nic_tap_name(vm, i, taps[i], 16);
		if (!taps[i][0]) {
			snprintf(err, errlen, "VM id %lld is too large for a tap "
			    "name", (long long)vm->id);
			return -1;
		}
		if (n->kernel) {
			if (kswitch_tap_up(vm, i, n, taps[i], err, errlen) < 0)
				return -1;
			continue;
		}
		if_alias(alias, sizeof(alias), "vm", vm->id, i);
		tap_del(vm, i);		/* a stale one of ours */
		if (if_exists(taps[i])) {
			snprintf(err, errlen, "the host has an interface %s that "
			    "vmgr did not make; it is left alone", taps[i]);
			taps[i][0] = '\0';
			return -1;
		}
		/* Owned by the VM's QEMU user, who may then open it. */
		snprintf(uid, sizeof(uid), "%u", priv_uid(vm));
		char *add[] = { "ip", "tuntap", "add", "dev", taps[i], "mode",
		    "tap", "user", uid, "group", uid, NULL };
		char *name[] = { "ip", "link", "set", "dev", taps[i], "alias",
		    alias, NULL };
		char *join[] = { "ip", "link", "set", taps[i], "master",
		    n->ifname, "up", NULL };
		if (run_ip(err, errlen, add) < 0 || run_ip(err, errlen,
		    name) < 0 || run_ip(err, errlen, join) < 0)
			return -1;
	}
	return 0;
}

void
net_taps_down(const struct vm *vm)
{
	for (int i = 0; i < vm->spec.nnics; i++) {
		struct net *n = net_find(vm->spec.nics[i].network);
		if (n != NULL && is_bridge(n))
			tap_del(vm, i);
		else if (n != NULL && n->kernel)
			kswitch_tap_down(vm, i);
	}
}

/* 1 when NIC i of vm is a tap: on a bridge, or on the kernel's switch. */
int
net_nic_is_tap(const struct vm *vm, int i)
{
	struct net *n = net_find(vm->spec.nics[i].network);

	return n && (is_bridge(n) || n->kernel);
}

const char *
net_nic_backend(const struct vm *vm, int i)
{
	struct net *n = net_find(vm->spec.nics[i].network);

	if (strcmp(vm->spec.nics[i].network, "nat") == 0)
		return nat_backend(vm, i);
	return n && is_bridge(n) ? "bridge" : n && n->kernel ? "kernel" :
	    "switch";
}

int
net_tap_open(const struct vm *vm, int i, const char *tap)
{
	struct net *n = net_find(vm->spec.nics[i].network);

	return n && n->kernel ? kswitch_tap_open(tap) : net_tap_fd(tap);
}

/*
 * A QEMU found running at start holds the NICs it was started with: one
 * on vmgrd's own switch cannot join a kernel's bridge (or the other way
 * round) until the VM is started again.
 */
void
net_adopt_check(const struct vm *vm)
{
	for (int i = 0; i < vm->spec.nnics; i++) {
		struct net *n = net_find(vm->spec.nics[i].network);
		char path[PATH_MAX];
		struct stat st;
		if (n == NULL || is_bridge(n) || n->down[0])
			continue;
		nic_sock_path(vm, i, path, sizeof(path));
		if (n->kernel && !kswitch_has_tap(vm, i))
			log_warnx("%s: NIC %d was started on vmgrd's own switch "
			    "(--switch user); it is not on network %s until the "
			    "VM is started again", vm->spec.name, i, n->name);
		else if (!n->kernel && stat(path, &st) < 0)
			log_warnx("%s: NIC %d was started on the kernel's bridge "
			    "(--switch kernel); it is not on network %s until "
			    "the VM is started again", vm->spec.name, i,
			    n->name);
	}
}

/* Down, and its files gone. */
void
bridge_close(struct net *n)
{
	static const char *const ext[] = { "hosts", "leases", "dnsmasq.log" };
	char path[PATH_MAX];

	if (!n->down[0])
		bridge_down(n);
	for (size_t i = 0; i < 3; i++) {
		net_file(n, ext[i], path, sizeof(path));
		unlink(path);
	}
}
