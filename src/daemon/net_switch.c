/*
 * net_switch.c - the switch of isolated networks.  Each network is a unix
 * datagram socket of vmgrd's own (STATE/net/ID.sock, in a 0700 directory,
 * so no other user can reach it); each NIC on it is a QEMU `-netdev dgram`
 * whose local end is vm/VMID/netN.sock.  vmgrd learns which MAC sits
 * behind which NIC, sends a frame to its owner, and floods broadcasts and
 * unknown destinations to the network's other NICs.  Frames never cross to
 * another network, and every NIC's traffic is counted.
 */
#include "net_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"

#define FRAME_MAX	65536

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

/* The network's socket, and the switch listening on it. */
int
switch_open(struct net *n, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int buf = 1 << 20;

	net_sock_path(n->id, path, sizeof(path));
	if ((n->fd = sock_bind(path, SOCK_DGRAM | SOCK_NONBLOCK, 0, 0)) < 0) {
		snprintf(err, errlen, "%.200s: %s", path, strerror(errno));
		return -1;
	}
	priv_net_socket(path);
	setsockopt(n->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	n->ev = event_new(vmgrd->base, n->fd, EV_READ | EV_PERSIST,
	    switch_frame, n);
	event_add(n->ev, NULL);
	return 0;
}

void
switch_close(struct net *n)
{
	char path[PATH_MAX];

	for (int i = 0; i < n->nports; i++)
		port_close(&n->ports[i]);
	free(n->ports);
	n->ports = NULL;
	n->nports = 0;
	if (n->ev)
		event_free(n->ev);
	if (n->fd >= 0)
		close(n->fd);
	net_sock_path(n->id, path, sizeof(path));
	unlink(path);
}
