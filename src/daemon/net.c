/*
 * net.c - isolated virtual networks: an L2 segment for VMs only, no root
 * needed.  Each network is a unix datagram socket of vmgrd's own
 * (STATE/net/ID.sock, in a 0700 directory, so no other user can reach
 * it); each NIC on it is a QEMU `-netdev dgram` whose local end is
 * vm/VMID/netN.sock.  vmgrd switches the frames: it learns which MAC sits
 * behind which NIC, sends a frame to its owner, and floods broadcasts and
 * unknown destinations to the network's other NICs.  Frames never cross to
 * another network, and every NIC's traffic is counted.
 *
 * Bridge networks (root only) are a Linux bridge with the subnet's first
 * address, a tap per NIC, and a dnsmasq of vmgrd's giving each NIC its
 * address by DHCP (pinned to its MAC).  Their set-up runs `ip`, briefly
 * and only when a network or a NIC comes or goes.
 */
#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <signal.h>

#include "../core/fdb.h"
#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

#define FRAME_MAX	65536

/*
 * A NIC of a running VM on an isolated network, as the switch sees it.
 * The ports of a network are rebuilt from the VMs when one starts or
 * stops (net_ports_changed, net_forget_vm), never kept past their VM.
 */
struct port {
	int64_t		 key;		/* VM id * SPEC_MAX_NICS + NIC */
	struct vm	*vm;
	int		 nic;
	uint8_t		 mac[6];
	int		 mac_filter;	/* drop frames from other sources */
	char		 path[160];	/* its QEMU's socket: where frames come from */
	int		 pfd;		/* O_PATH of that socket, or -1 */
	int		 refused;	/* it is not its QEMU's: said once */
};

struct net {
	TAILQ_ENTRY(net) entry;
	int64_t		 id;
	char		 name[SPEC_NAME_MAX + 1];
	char		 type[16];
	unsigned	 addr;		/* network address, host order */
	int		 prefix;
	int64_t		 created_at;
	int		 fd;
	struct event	*ev;
	struct port	*ports;
	int		 nports;
	int		 ports_stale;
	struct fdb	 fdb;		/* MACs learned from unfiltered ports */
	char		 ifname[16];	/* bridge: the Linux bridge */
	int		 adopted;	/* the user's bridge, used as it is */
	char		 down[256];	/* why it could not be set up, or "" */
	pid_t		 dnsmasq;
	struct proc_watch *dnsmasq_watch;
	struct event	*hup;		/* a SIGHUP waiting for it to be ready */
};
TAILQ_HEAD(netq, net);
static struct netq nets = TAILQ_HEAD_INITIALIZER(nets);



static struct net *
net_find(const char *name)
{
	struct net *n;

	TAILQ_FOREACH(n, &nets, entry)
		if (strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

int64_t
net_id(const char *name)
{
	struct net *n = net_find(name);

	return n ? n->id : -1;
}

static int64_t
port_key(const struct vm *vm, int nic)
{
	return vm->id * SPEC_MAX_NICS + nic;
}

static void
port_close(struct port *p)
{
	if (p->pfd >= 0)
		close(p->pfd);
	p->pfd = -1;
}

static void
mac_parse(const char *s, uint8_t mac[6])
{
	unsigned v[6] = { 0 };

	sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4],
	    &v[5]);
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
}

/* The ports of n are the NICs of its running VMs; keep what still is. */
static void
ports_rebuild(struct net *n)
{
	struct port *old = n->ports, *p;
	int nold = n->nports, cap = 0;
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; vm->pid > 0 && i < vm->spec.nnics; i++)
			cap += strcmp(vm->spec.nics[i].network, n->name) == 0;
	n->ports = cap ? calloc((size_t)cap, sizeof(*n->ports)) : NULL;
	n->nports = 0;
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; n->ports && vm->pid > 0 && i < vm->spec.nnics;
		    i++) {
			if (strcmp(vm->spec.nics[i].network, n->name) != 0)
				continue;
			p = &n->ports[n->nports++];
			p->key = port_key(vm, i);
			p->vm = vm;
			p->nic = i;
			p->pfd = -1;
			mac_parse(vm->spec.nics[i].mac, p->mac);
			p->mac_filter = vm->spec.nics[i].mac_filter;
			nic_sock_path(vm, i, p->path, sizeof(p->path));
			for (int k = 0; k < nold; k++)
				if (old[k].key == p->key && old[k].vm == vm) {
					p->pfd = old[k].pfd;
					p->refused = old[k].refused;
					old[k].pfd = -1;
				}
		}
	for (int k = 0; k < nold; k++)
		port_close(&old[k]);
	free(old);
	n->ports_stale = 0;
}

/* A VM's QEMU came or went: the switch learns its ports again. */
void
net_ports_changed(void)
{
	struct net *n;

	TAILQ_FOREACH(n, &nets, entry)
		n->ports_stale = 1;
}

static struct port *
port_by_path(struct net *n, const char *path)
{
	for (int i = 0; i < n->nports; i++)
		if (strcmp(n->ports[i].path, path) == 0)
			return &n->ports[i];
	return NULL;
}

static struct port *
port_by_key(struct net *n, int64_t key)
{
	for (int i = 0; key >= 0 && i < n->nports; i++)
		if (n->ports[i].key == key)
			return &n->ports[i];
	return NULL;
}

/* The port whose own MAC (from its spec) mac is. */
static struct port *
port_by_mac(struct net *n, const uint8_t mac[6])
{
	for (int i = 0; i < n->nports; i++)
		if (memcmp(n->ports[i].mac, mac, 6) == 0)
			return &n->ports[i];
	return NULL;
}

/*
 * The NIC's socket is its QEMU's, in a directory that QEMU's user may
 * write: vmgrd sends through an O_PATH descriptor of the socket itself,
 * opened without following links and checked to be a socket of that
 * user, so a link planted there can never aim vmgrd's frames at another
 * socket of the host.
 */
static int
port_open(struct port *p)
{
	struct stat st;

	if (p->pfd >= 0)
		return 0;
	if (p->refused)
		return -1;	/* until its QEMU starts again */
	if ((p->pfd = open(p->path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(p->pfd, &st) < 0 || !S_ISSOCK(st.st_mode) ||
	    st.st_uid != p->vm->qemu_uid) {
		log_warnx("%s: NIC %d: %s is not its QEMU's socket; frames to "
		    "it are dropped", p->vm->spec.name, p->nic, p->path);
		port_close(p);
		p->refused = 1;
		return -1;
	}
	return 0;
}

static void
send_to(struct net *n, struct port *p, const unsigned char *f, size_t len)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	if (port_open(p) < 0)
		return;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "/proc/self/fd/%d",
	    p->pfd);
	if (sendto(n->fd, f, len, MSG_DONTWAIT, (struct sockaddr *)&sun,
	    sizeof(sun)) == (ssize_t)len) {
		p->vm->nic_rx_bytes[p->nic] += len;
		p->vm->nic_rx_packets[p->nic]++;
	} else if (errno == ECONNREFUSED || errno == ENOENT)
		port_close(p);	/* its QEMU went; open anew next time */
	/* A full receiver drops the frame, as a switch would. */
}

/*
 * One frame from port `from`.  A NIC with its MAC filter on (the default)
 * may only send from its own MAC, like a switch port with port security;
 * frames to a NIC's own MAC go to it alone; other unicast frames go to
 * where that address was learned (from NICs whose filter is off), and
 * broadcasts and unknown destinations are flooded: to every other port
 * for a group address, to the unfiltered ports for an unknown unicast
 * (a filtered NIC owns no address but its own).
 */
static void
switch_one(struct net *n, struct port *from, const unsigned char *f,
    size_t len)
{
	struct port *to;

	from->vm->nic_tx_bytes[from->nic] += len;
	from->vm->nic_tx_packets[from->nic]++;
	if (from->mac_filter && memcmp(f + 6, from->mac, 6) != 0) {
		from->vm->nic_spoofed[from->nic]++;
		return;
	}
	/* An unfiltered port may not take a filtered port's address. */
	if (!from->mac_filter && ((to = port_by_mac(n, f + 6)) == NULL ||
	    to == from))
		fdb_learn(&n->fdb, f + 6, from->key);
	if (!(f[0] & 1)) {
		if ((to = port_by_mac(n, f)) == NULL)
			to = port_by_key(n, fdb_lookup(&n->fdb, f));
		if (to) {
			if (to != from)
				send_to(n, to, f, len);
			return;
		}
	}
	for (int i = 0; i < n->nports; i++) {
		to = &n->ports[i];
		if (to != from && (f[0] & 1 || !to->mac_filter))
			send_to(n, to, f, len);
	}
}

static void
switch_frame(evutil_socket_t fd, short what, void *arg)
{
	static unsigned char f[FRAME_MAX];
	struct net *n = arg;
	struct sockaddr_un src;
	socklen_t slen = sizeof(src);
	struct port *from;

	(void)what;
	if (n->ports_stale)
		ports_rebuild(n);
	for (int burst = 0; burst < 64; burst++) {
		ssize_t len = recvfrom(fd, f, sizeof(f), MSG_DONTWAIT,
		    (struct sockaddr *)&src, &slen);
		if (len < 0)
			return;
		if (len >= 14 && slen > sizeof(sa_family_t)) {
			src.sun_path[sizeof(src.sun_path) - 1] = '\0';
			/* Only the NICs of running VMs on this network may send. */
			if ((from = port_by_path(n, src.sun_path)) != NULL)
				switch_one(n, from, f, (size_t)len);
		}
		slen = sizeof(src);
	}
}

/* A VM's QEMU is gone, or the VM is: no port or learned address is left. */
void
net_forget_vm(const struct vm *vm)
{
	int64_t lo = port_key(vm, 0), hi = port_key(vm, SPEC_MAX_NICS - 1);
	struct net *n;

	TAILQ_FOREACH(n, &nets, entry) {
		fdb_forget(&n->fdb, lo, hi);
		for (int i = 0; i < n->nports; ) {
			if (n->ports[i].vm == vm) {
				port_close(&n->ports[i]);
				n->ports[i] = n->ports[--n->nports];
			} else
				i++;
		}
		n->ports_stale = 1;
	}
}

static int
is_bridge(const struct net *n)
{
	return strcmp(n->type, "bridge") == 0;
}

static void
net_file(const struct net *n, const char *ext, char *buf, size_t len)
{
	snprintf(buf, len, "%s/net/%lld.%s", vmgrd->state_dir,
	    (long long)n->id, ext);
}

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

static char *
ipv4(unsigned a, char *buf, size_t len)
{
	struct in_addr ia = { htonl(a) };

	inet_ntop(AF_INET, &ia, buf, (socklen_t)len);
	return buf;
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
static void
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

static int
if_exists(const char *ifname)
{
	return if_has(ifname, "");
}

/* 1 when ifname carries alias: vmgr (this state dir's) made it. */
static int
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

static int
if_is_bridge(const char *ifname)
{
	return if_has(ifname, "bridge");
}

/* The bridge with the gateway address, and its DHCP server. */
static int
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
	dnsmasq_stop(n);	/* one left by an earlier vmgrd */
	return dnsmasq_start(n, err, errlen);
}

static void
bridge_down(struct net *n)
{
	char err[256], alias[256];
	char *del[] = { "ip", "link", "del", n->ifname, NULL };

	dnsmasq_stop(n);
	if_alias(alias, sizeof(alias), "network", n->id, -1);
	if (n->adopted || !if_ours(n->ifname, alias))
		return;		/* not ours to delete */
	if (run_ip(err, sizeof(err), del) < 0)
		log_warnx("%s: %s", __func__, err);
}

/*
 * The tap of a VM's NIC on a bridge network: "vmgrt<vmid>n<nic>"; "" when
 * that does not fit an interface name (a VM id past 99999999).
 */
void
nic_tap_name(const struct vm *vm, int nic, char *buf, size_t len)
{
	int w = snprintf(buf, len, "vmgrt%lldn%d", (long long)vm->id, nic);

	if (w < 0 || (size_t)w >= len || w > 15)
		buf[0] = '\0';
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
		if (n == NULL || !is_bridge(n))
			continue;
		nic_tap_name(vm, i, taps[i], 16);
		if (!taps[i][0]) {
			snprintf(err, errlen, "VM id %lld is too large for a tap "
			    "name", (long long)vm->id);
			return -1;
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
	}
}

/* 1 when NIC i of vm is on a bridge network. */
int
net_nic_is_tap(const struct vm *vm, int i)
{
	struct net *n = net_find(vm->spec.nics[i].network);

	return n && is_bridge(n);
}

static int
net_open(struct net *n, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	int buf = 1 << 20;

	snprintf(dir, sizeof(dir), "%s/net", vmgrd->state_dir);
	mkdir_p(dir, 0700);
	if (is_bridge(n))
		return bridge_up(n, err, errlen);
	net_sock_path(n->id, dir, sizeof(dir));
	if ((n->fd = sock_bind(dir, SOCK_DGRAM | SOCK_NONBLOCK, 0, 0)) < 0) {
		snprintf(err, errlen, "%.200s: %s", dir, strerror(errno));
		return -1;
	}
	priv_net_socket(dir);
	setsockopt(n->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	n->ev = event_new(vmgrd->base, n->fd, EV_READ | EV_PERSIST,
	    switch_frame, n);
	event_add(n->ev, NULL);
	return 0;
}

static void
net_close(struct net *n)
{
	char path[PATH_MAX];

	for (int i = 0; i < n->nports; i++)
		port_close(&n->ports[i]);
	free(n->ports);
	n->ports = NULL;
	n->nports = 0;

	if (is_bridge(n)) {
		if (!n->down[0])
			bridge_down(n);
		static const char *const ext[] = { "hosts", "leases",
		    "dnsmasq.log" };
		for (size_t i = 0; i < 3; i++) {
			net_file(n, ext[i], path, sizeof(path));
			unlink(path);
		}
		return;
	}
	if (n->ev)
		event_free(n->ev);
	if (n->fd >= 0)
		close(n->fd);
	net_sock_path(n->id, path, sizeof(path));
	unlink(path);
}

static char *
cidr_str(unsigned addr, int prefix, char *buf, size_t len)
{
	struct in_addr a = { htonl(addr) };
	char s[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a, s, sizeof(s));
	snprintf(buf, len, "%s/%d", s, prefix);
	return buf;
}

static int
in_use_by(const struct net *n, char *who, size_t len)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; i < vm->spec.nnics; i++)
			if (strcmp(vm->spec.nics[i].network, n->name) == 0) {
				snprintf(who, len, "%s", vm->spec.name);
				return 1;
			}
	return 0;
}

static json_t *
net_json(const struct net *n)
{
	char cidr[32], when[40];
	json_t *members = json_array(), *o;
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; i < vm->spec.nnics; i++)
			if (strcmp(vm->spec.nics[i].network, n->name) == 0)
				json_array_append_new(members, json_pack(
				    "{s:s, s:i, s:s, s:s, s:b}", "vm",
				    vm->spec.name, "nic", i, "mac",
				    vm->spec.nics[i].mac, "ip",
				    vm->spec.nics[i].ip, "running", vm->pid > 0));
	o = json_pack("{s:I, s:s, s:s, s:o, s:s, s:o, s:s}", "id",
	    (json_int_t)n->id, "name", n->name, "type", n->type, "subnet",
	    n->adopted ? json_null() : json_string(cidr_str(n->addr, n->prefix,
	    cidr, sizeof(cidr))), "created_at", fmt_time_ms(n->created_at, when,
	    sizeof(when)), "members", members, "state", n->down[0] ? "down" :
	    "up");
	if (n->down[0])
		json_object_set_new(o, "error", json_string(n->down));
	if (is_bridge(n)) {
		char gw[16];
		json_object_set_new(o, "bridge", json_string(n->ifname));
		json_object_set_new(o, "adopted", json_boolean(n->adopted));
		if (!n->adopted)
			json_object_set_new(o, "gateway", json_string(ipv4(
			    n->addr + 1, gw, sizeof(gw))));
		if (n->dnsmasq > 0)
			json_object_set_new(o, "dhcp_pid",
			    json_integer(n->dnsmasq));
	}
	return o;
}

/*
 * Give each NIC on a vmgr network an address of its subnet, the first
 * free one from .2 (.1 is left for a gateway); check given ones.
 */
int
net_assign_ips(struct vm_spec *spec, char *err, size_t errlen)
{
	for (int i = 0; i < spec->nnics; i++) {
		struct spec_nic *nic = &spec->nics[i];
		struct net *n;
		struct in_addr a;

		if (strcmp(nic->network, "nat") == 0)
			continue;
		if ((n = net_find(nic->network)) == NULL) {
			snprintf(err, errlen, "nics[%d]: no network \"%s\" (see "
			    "`vmgr network list`)", i, nic->network);
			return -1;
		}
		/* An adopted bridge's network gives its own addresses. */
		if (n->adopted) {
			if (nic->ip[0]) {
				snprintf(err, errlen, "nics[%d]: network %s is an "
				    "adopted bridge: its addresses are its "
				    "network's, not vmgr's", i, n->name);
				return -1;
			}
			continue;
		}
		unsigned mask = ~0u << (32 - n->prefix);
		unsigned last = n->addr | ~mask;
		if (nic->ip[0]) {
			inet_pton(AF_INET, nic->ip, &a);
			unsigned h = ntohl(a.s_addr);
			if ((h & mask) != n->addr || h == n->addr || h == last) {
				snprintf(err, errlen, "nics[%d].ip %s is not a "
				    "host address of %s", i, nic->ip, n->name);
				return -1;
			}
		}
		for (unsigned h = n->addr + 2; !nic->ip[0] && h < last; h++) {
			char ip[16];
			int taken = 0;
			struct vm *vm;
			a.s_addr = htonl(h);
			inet_ntop(AF_INET, &a, ip, sizeof(ip));
			TAILQ_FOREACH(vm, &vmgrd->vms, entry)
				for (int k = 0; k < vm->spec.nnics; k++)
					taken |= strcmp(vm->spec.nics[k].network,
					    n->name) == 0 && strcmp(
					    vm->spec.nics[k].ip, ip) == 0;
			for (int k = 0; k < i; k++)
				taken |= strcmp(spec->nics[k].ip, ip) == 0;
			if (!taken)
				snprintf(nic->ip, sizeof(nic->ip), "%s", ip);
		}
		if (!nic->ip[0]) {
			snprintf(err, errlen, "network %s has no free address",
			    n->name);
			return -1;
		}
	}
	return 0;
}

/* "vmgr.ip.eth1=10.10.0.2/24" for each NIC on a vmgr network. */
void
net_cmdline(const struct vm_spec *spec, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < spec->nnics && o < len; i++) {
		struct net *n = net_find(spec->nics[i].network);
		/* Bridge NICs ask the network's DHCP server instead. */
		if (n == NULL || is_bridge(n) || !spec->nics[i].ip[0])
			continue;
		int w = snprintf(buf + o, len - o, " vmgr.ip.eth%d=%s/%d", i,
		    spec->nics[i].ip, n->prefix);
		if (w < 0 || (size_t)w >= len - o)
			break;
		o += (size_t)w;
	}
}

/* Set n up and list it; one that cannot be set up is listed as down. */
static void
load_one(struct net *n)
{
	char err[256];

	if (net_open(n, err, sizeof(err)) < 0) {
		snprintf(n->down, sizeof(n->down), "%s", err);
		log_warnx("network %s is down: %s", n->name, err);
	}
	TAILQ_INSERT_TAIL(&nets, n, entry);
}

static int
load_cb(const struct net_row *r, void *arg)
{
	struct net *n = calloc(1, sizeof(*n));

	(void)arg;
	if (n == NULL)
		return -1;
	n->id = r->id;
	n->fd = -1;
	snprintf(n->name, sizeof(n->name), "%s", r->name);
	snprintf(n->type, sizeof(n->type), "%s", r->type);
	snprintf(n->ifname, sizeof(n->ifname), "%s", r->ifname ? r->ifname :
	    "");
	n->adopted = r->adopted;
	n->created_at = r->created_at;
	if (!n->adopted && spec_cidr_parse(r->subnet, &n->addr, &n->prefix) <
	    0) {
		log_warnx("%s: network %s has an unreadable subnet; skipped",
		    __func__, r->name);
		free(n);
		return 0;
	}
	load_one(n);
	return 0;
}

int
net_load_all(void)
{
	return db_net_foreach(vmgrd->db, load_cb, NULL);
}

void
net_api_list(struct evhttp_request *req)
{
	json_t *arr = json_array();
	struct net *n;

	TAILQ_FOREACH(n, &nets, entry)
		json_array_append_new(arr, net_json(n));
	api_reply_json(req, 200, arr);
}

void
net_api_get(struct evhttp_request *req, const char *name)
{
	struct net *n = net_find(name);

	if (n == NULL)
		api_reply_error(req, 404, "no_such_network", "no network named "
		    "\"%s\"", name);
	else
		api_reply_json(req, 200, net_json(n));
}

/* A Linux interface name vmgr may be given: 1 to 15 of [A-Za-z0-9_.-]. */
static int
ifname_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 15 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_.-") == n;
}

/* A vmgr network that uses the interface ifname, or NULL. */
static struct net *
net_by_ifname(const char *ifname)
{
	struct net *n;

	TAILQ_FOREACH(n, &nets, entry)
		if (is_bridge(n) && strcmp(n->ifname, ifname) == 0)
			return n;
	return NULL;
}

/* The bridge name of a new network: vmgrbrN, from N = its id up. */
static void
pick_ifname(struct net *n)
{
	char alias[256];

	if_alias(alias, sizeof(alias), "network", n->id, -1);
	for (int64_t k = n->id; k < n->id + 1000; k++) {
		snprintf(n->ifname, sizeof(n->ifname), "vmgrbr%lld",
		    (long long)k);
		if ((!if_exists(n->ifname) || if_ours(n->ifname, alias)) &&
		    net_by_ifname(n->ifname) == NULL)
			return;
	}
}

void
net_api_create(struct evhttp_request *req, json_t *body)
{
	const char *key, *name, *type = "isolated", *subnet = NULL;
	char auto_subnet[32], cidr[32] = "", err[256];
	json_t *v, *jbridge = json_object_get(body, "bridge");
	json_t *jadopt = json_object_get(body, "adopt");
	const char *bridge = json_string_value(jbridge);
	const char *adopt = json_string_value(jadopt);
	struct net *n, *o;

	json_object_foreach(body, key, v)
		if (strcmp(key, "name") && strcmp(key, "type") &&
		    strcmp(key, "subnet") && strcmp(key, "bridge") &&
		    strcmp(key, "adopt")) {
			api_reply_error(req, 422, "unknown_field",
			    "unknown field \"%s\"", key);
			return;
		}
	name = json_string_value(json_object_get(body, "name"));
	if (json_object_get(body, "type"))
		type = json_string_value(json_object_get(body, "type"));
	if (json_object_get(body, "subnet"))
		subnet = json_string_value(json_object_get(body, "subnet"));
	if (name == NULL || !spec_name_valid(name) || strcmp(name, "nat") == 0 ||
	    strcmp(name, "default") == 0 || strcmp(name, "user") == 0) {
		api_reply_error(req, 422, "invalid_name", "a network needs a "
		    "valid name (a-z 0-9 _ . -; not nat, default or user)");
		return;
	}
	if (type == NULL || (strcmp(type, "isolated") != 0 &&
	    strcmp(type, "bridge") != 0)) {
		api_reply_error(req, 422, "invalid_value", "type must be isolated "
		    "or bridge");
		return;
	}
	if ((jbridge || jadopt) && strcmp(type, "bridge") != 0) {
		api_reply_error(req, 422, "invalid_value", "bridge and adopt are "
		    "for bridge networks");
		return;
	}
	if ((jbridge && !ifname_valid(bridge)) || (jadopt &&
	    !ifname_valid(adopt)) || (jbridge && jadopt)) {
		api_reply_error(req, 422, "invalid_value", "give bridge (a new "
		    "interface's name) or adopt (an existing bridge's), 1 to 15 "
		    "of A-Z a-z 0-9 _ . -");
		return;
	}
	if (jadopt && json_object_get(body, "subnet")) {
		api_reply_error(req, 422, "invalid_value", "an adopted bridge's "
		    "addresses are its network's: give no subnet");
		return;
	}
	if (strcmp(type, "bridge") == 0 && geteuid() != 0) {
		api_reply_error(req, 403, "needs_root", "bridge networks need "
		    "vmgrd to run as root (a bridge, taps, a DHCP server); "
		    "isolated networks do not");
		return;
	}
	if (net_find(name)) {
		api_reply_error(req, 409, "exists", "a network named \"%s\" "
		    "already exists", name);
		return;
	}
	/* vmgr never takes an interface over unless told to adopt it. */
	if (bridge && (if_exists(bridge) || net_by_ifname(bridge))) {
		api_reply_error(req, 409, "interface_exists", "the host already "
		    "has an interface %s; vmgr makes bridges of its own, or uses "
		    "an existing one as it is with --adopt-bridge %s", bridge,
		    bridge);
		return;
	}
	if (adopt) {
		if (!if_exists(adopt) || !if_is_bridge(adopt)) {
			api_reply_error(req, 422, "not_a_bridge", "%s is not a "
			    "bridge of this host", adopt);
			return;
		}
		if ((o = net_by_ifname(adopt)) != NULL) {
			api_reply_error(req, 409, "interface_in_use", "%s is the "
			    "bridge of network %s already", adopt, o->name);
			return;
		}
	}
	if ((n = calloc(1, sizeof(*n))) == NULL) {
		api_reply_error(req, 500, "no_memory", "out of memory");
		return;
	}
	n->fd = -1;
	n->adopted = adopt != NULL;
	if (subnet == NULL && !adopt) {
		/* The first free 10.N.0.0/24, N from 10 up. */
		for (int k = 10; k < 256 && subnet == NULL; k++) {
			snprintf(auto_subnet, sizeof(auto_subnet), "10.%d.0.0/24",
			    k);
			unsigned a;
			int p, clash = 0;
			spec_cidr_parse(auto_subnet, &a, &p);
			TAILQ_FOREACH(o, &nets, entry)
				clash |= !o->adopted && o->addr == a;
			if (!clash)
				subnet = auto_subnet;
		}
	}
	if (!adopt && (subnet == NULL || spec_cidr_parse(subnet, &n->addr,
	    &n->prefix) < 0)) {
		free(n);
		api_reply_error(req, 422, "invalid_value", "subnet must be an "
		    "IPv4 network such as 10.10.0.0/24 (prefix 8 to 30, no host "
		    "bits)");
		return;
	}
	TAILQ_FOREACH(o, &nets, entry) {
		if (adopt || o->adopted)
			continue;
		int p = o->prefix < n->prefix ? o->prefix : n->prefix;
		unsigned mask = ~0u << (32 - p);
		if ((o->addr & mask) == (n->addr & mask)) {
			free(n);
			api_reply_error(req, 409, "subnet_overlaps", "subnet %s "
			    "overlaps %s of network %s", subnet, cidr_str(o->addr,
			    o->prefix, cidr, sizeof(cidr)), o->name);
			return;
		}
	}
	snprintf(n->name, sizeof(n->name), "%s", name);
	snprintf(n->type, sizeof(n->type), "%s", type);
	snprintf(n->ifname, sizeof(n->ifname), "%s", adopt ? adopt : bridge ?
	    bridge : "");
	n->created_at = now_unix_ms();
	if (!adopt)
		cidr_str(n->addr, n->prefix, cidr, sizeof(cidr));
	struct net_row row = { .name = n->name, .type = n->type, .subnet = cidr,
	    .created_at = n->created_at, .ifname = n->ifname, .adopted =
	    n->adopted };
	if (db_net_insert(vmgrd->db, &row, &n->id) < 0) {
		free(n);
		api_reply_error(req, db_full(vmgrd->db) ? 507 : 500, "database",
		    "%s", db_errmsg(vmgrd->db));
		return;
	}
	if (is_bridge(n) && !n->ifname[0]) {
		pick_ifname(n);
		if (db_net_set_ifname(vmgrd->db, n->id, n->ifname) < 0) {
			db_net_delete(vmgrd->db, n->id);
			free(n);
			api_reply_error(req, db_full(vmgrd->db) ? 507 : 500,
			    "database", "%s", db_errmsg(vmgrd->db));
			return;
		}
	}
	if (net_open(n, err, sizeof(err)) < 0) {
		db_net_delete(vmgrd->db, n->id);
		if (is_bridge(n))
			bridge_down(n);
		free(n);
		api_reply_error(req, 500, "network_setup", "cannot set up network "
		    "%s: %s", name, err);
		return;
	}
	TAILQ_INSERT_TAIL(&nets, n, entry);
	log_info("network %s created (%s, %s%s%s)", n->name, n->type,
	    adopt ? "adopting " : cidr, is_bridge(n) && !adopt ? ", bridge " :
	    "", is_bridge(n) ? n->ifname : "");
	api_reply_json(req, 201, net_json(n));
}

void
net_api_delete(struct evhttp_request *req, const char *name)
{
	struct net *n = net_find(name);
	char who[SPEC_NAME_MAX + 1];

	if (n == NULL) {
		api_reply_error(req, 404, "no_such_network", "no network named "
		    "\"%s\"", name);
		return;
	}
	if (in_use_by(n, who, sizeof(who))) {
		api_reply_error(req, 409, "network_in_use", "network %s is used "
		    "by VM %s; delete the VM or its NIC first", name, who);
		return;
	}
	if (db_net_delete(vmgrd->db, n->id) < 0) {
		api_reply_error(req, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
		return;
	}
	TAILQ_REMOVE(&nets, n, entry);
	net_close(n);
	log_info("network %s deleted", name);
	api_reply_json(req, 200, json_pack("{s:s, s:s}", "name", name,
	    "state", "deleted"));
	free(n);
}

/*
 * A NIC's counters as the guest sees them: received bytes, sent bytes,
 * received frames, sent frames.  Taps count from the host's side, so
 * their tx is the guest's rx.
 */
void
net_nic_counters(const struct vm *vm, int i, uint64_t c[NIC_NCOUNTERS])
{
	static const char *const f[4] = { "tx_bytes", "rx_bytes", "tx_packets",
	    "rx_packets" };
	char tap[16], path[128], *s;

	if (!net_nic_is_tap(vm, i)) {
		c[0] = vm->nic_rx_bytes[i];
		c[1] = vm->nic_tx_bytes[i];
		c[2] = vm->nic_rx_packets[i];
		c[3] = vm->nic_tx_packets[i];
		c[4] = vm->nic_spoofed[i];
		return;
	}
	c[4] = NIC_UNCOUNTED;	/* the kernel's bridge switches taps */
	nic_tap_name(vm, i, tap, sizeof(tap));
	for (int k = 0; k < 4; k++) {
		snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s",
		    tap, f[k]);
		c[k] = (s = read_file(path, 64, NULL)) ? strtoull(s, NULL, 10) :
		    0;
		free(s);
	}
}
