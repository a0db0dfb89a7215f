/*
 * net_switch.c - the switch of isolated networks, on a thread of its own.
 *
 * Each NIC on an isolated network is a QEMU `-netdev stream` listening on
 * a socket vmgrd bound for it in the VM's run dir (vm/ID/nicN.sock, in a
 * directory only root may write); the switch connects to it, again after
 * a restart of vmgrd.  Frames go both ways as a stream, each with a 4-byte
 * big-endian length, so one read takes every frame QEMU has queued and one
 * write sends every frame switched to a NIC since the last: the cost of a
 * system call is shared by many frames.  A connection is its NIC: nothing
 * else can send as it, and no path is looked up per frame.
 *
 * The switch learns which MAC sits behind which NIC, sends a frame to its
 * owner, and floods broadcasts and unknown destinations to the network's
 * other NICs.  Frames never cross to another network.  A NIC whose queue
 * is full loses the frame, as on a real switch, and the loss is counted
 * with the NIC's other counters.
 *
 * The thread owns the data path and nothing else: the API's loop never
 * waits for frames and frames never wait for the API.  It shares with the
 * loop the ports, their counters and the networks' address tables, all
 * under one lock, which the loop takes only to change a network's ports
 * (a VM started or stopped) or to read counters, and the thread only
 * while it switches what one wait brought.  The thread never reads a VM or
 * a network but through its ports, which the loop makes and frees with the
 * lock held; epoll names a port by its serial number, never its address,
 * so an event for a port freed since is found to name nobody.
 */
#include "net_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"

#define FRAME_MAX	(65536 + 4096)	/* QEMU's NET_BUFSIZE: none larger */
#define IN_CAP		(256 * 1024 + FRAME_MAX) /* read at once from a NIC */
#define OUT_CAP		(1024 * 1024)	/* queued for one NIC, then dropped */

/*
 * A NIC of a running VM on an isolated network.  The loop makes it when
 * the VM starts (or vmgrd does, with the VM running), and frees it when
 * the VM stops; in between, the thread moves its frames.
 */
struct port {
	uint64_t	 serial;	/* its name in epoll */
	int64_t		 key;		/* VM id * SPEC_MAX_NICS + NIC */
	struct net	*net;
	struct vm	*vm;		/* only its counters, under the lock */
	int		 nic;
	uint8_t		 mac[6];
	int		 mac_filter;	/* drop frames from other sources */
	int		 fd;		/* connected to its QEMU, or -1 */
	int		 out_armed;	/* epoll waits for room to write */
	int		 dirty;		/* on the list of ports to write */
	struct port	*next_dirty;
	size_t		 inlen, outoff, outlen;
	unsigned char	 in[IN_CAP];
	unsigned char	 out[OUT_CAP];
};

static struct {
	pthread_mutex_t	 lock;
	pthread_t	 thread;
	int		 started;
	int		 epfd;
	uint64_t	 next_serial;
	struct port	**all;		/* every port of every network */
	int		 nall, capall;
	struct port	*dirty;		/* ports with frames to write */
	uint64_t	 wakeups, frames;
} sw = { .lock = PTHREAD_MUTEX_INITIALIZER, .epfd = -1 };

static uint32_t
be32_get(const unsigned char *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	    (uint32_t)b[2] << 8 | b[3];
}

static void
be32_put(unsigned char *b, uint32_t v)
{
	b[0] = (unsigned char)(v >> 24);
	b[1] = (unsigned char)(v >> 16);
	b[2] = (unsigned char)(v >> 8);
	b[3] = (unsigned char)v;
}

/* Room in sw.all for one more port. */
static int
all_reserve(void)
{
	struct port **a;
	int cap;

	if (sw.nall < sw.capall)
		return 0;
	cap = sw.capall ? 2 * sw.capall : 16;
	if ((a = realloc(sw.all, (size_t)cap * sizeof(*a))) == NULL)
		return -1;
	sw.all = a;
	sw.capall = cap;
	return 0;
}

static int64_t
port_key(const struct vm *vm, int nic)
{
	return vm->id * SPEC_MAX_NICS + nic;
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

static struct port *
port_by_serial(uint64_t serial)
{
	for (int i = 0; i < sw.nall; i++)
		if (sw.all[i]->serial == serial)
			return sw.all[i];
	return NULL;
}

/* Its QEMU hung up, or broke the stream: it gets and sends no more. */
static void
port_unplug(struct port *p)
{
	if (p->fd < 0)
		return;
	epoll_ctl(sw.epfd, EPOLL_CTL_DEL, p->fd, NULL);
	close(p->fd);
	p->fd = -1;
	p->inlen = p->outlen = p->outoff = 0;
}

/* Lock held. */
static void
port_free(struct port *p)
{
	struct port **pp;

	port_unplug(p);
	for (pp = &sw.dirty; *pp; pp = &(*pp)->next_dirty)
		if (*pp == p) {
			*pp = p->next_dirty;
			break;
		}
	for (int i = 0; i < sw.nall; i++)
		if (sw.all[i] == p) {
			sw.all[i] = sw.all[--sw.nall];
			break;
		}
	free(p);
}

/*
 * Connect to the socket QEMU listens on for the NIC.  The run dir is
 * root's, so the name is vmgrd's own socket and no link can stand in for
 * it.  QEMU accepts when it is ready: the backlog holds the connection.
 */
static int
port_plug(struct port *p)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP,
	    .data.u64 = p->serial };
	char path[PATH_MAX];

	nic_sock_path(p->vm, p->nic, path, sizeof(path));
	if ((p->fd = sock_connect(path, SOCK_NONBLOCK)) >= 0)
		sock_buffers(p->fd, 1 << 20);	/* room for bursts to QEMU */
	if (p->fd < 0) {
		log_warn("%s: NIC %d is not connected to network %s (%s)",
		    p->vm->spec.name, p->nic, p->net->name, path);
		if (errno == EPROTOTYPE || errno == ECONNREFUSED ||
		    errno == ENOENT)
			log_warnx("%s: its QEMU may have been started by an "
			    "older vmgrd; restart the VM to connect it",
			    p->vm->spec.name);
		return -1;
	}
	if (epoll_ctl(sw.epfd, EPOLL_CTL_ADD, p->fd, &ev) < 0) {
		log_warn("%s: epoll", __func__);
		close(p->fd);
		p->fd = -1;
		return -1;
	}
	return 0;
}

/*
 * The ports of n are the NICs of its running VMs: keep those that still
 * are, plug in the new ones, let the others go.  Loop, lock held.
 */
static void
ports_rebuild(struct net *n)
{
	struct port **ports = NULL;
	int np = 0, cap = 0;
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; vm->pid > 0 && i < vm->spec.nnics; i++)
			cap += strcmp(vm->spec.nics[i].network, n->name) == 0;
	if (cap && (ports = calloc((size_t)cap, sizeof(*ports))) == NULL) {
		log_warn("%s", __func__);
		return;
	}
	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; ports && vm->pid > 0 && i < vm->spec.nnics;
		    i++) {
			struct port *p = NULL;
			if (strcmp(vm->spec.nics[i].network, n->name) != 0)
				continue;
			for (int k = 0; k < n->nports; k++)
				if (n->ports[k] && n->ports[k]->vm == vm &&
				    n->ports[k]->key == port_key(vm, i)) {
					p = n->ports[k];
					n->ports[k] = NULL;
				}
			if (p == NULL) {
				if (all_reserve() < 0 ||
				    (p = malloc(sizeof(*p))) == NULL) {
					free(p);
					continue;
				}
				memset(p, 0, offsetof(struct port, in));
				p->serial = ++sw.next_serial;
				p->key = port_key(vm, i);
				p->net = n;
				p->vm = vm;
				p->nic = i;
				p->fd = -1;
				mac_parse(vm->spec.nics[i].mac, p->mac);
				p->mac_filter = vm->spec.nics[i].mac_filter;
				sw.all[sw.nall++] = p;
				port_plug(p);
			}
			ports[np++] = p;
		}
	for (int k = 0; k < n->nports; k++)
		if (n->ports[k])
			port_free(n->ports[k]);
	free(n->ports);
	n->ports = ports;
	n->nports = np;
}

/* A VM's QEMU came or went: the switch learns its ports again. */
void
net_ports_changed(void)
{
	struct net *n;

	pthread_mutex_lock(&sw.lock);
	TAILQ_FOREACH(n, &nets, entry)
		if (!is_bridge(n) && !n->kernel && !n->down[0])
			ports_rebuild(n);
	pthread_mutex_unlock(&sw.lock);
}

/* A VM's QEMU is gone, or the VM is: no port or learned address is left. */
void
net_forget_vm(const struct vm *vm)
{
	int64_t lo = port_key(vm, 0), hi = port_key(vm, SPEC_MAX_NICS - 1);
	struct net *n;

	pthread_mutex_lock(&sw.lock);
	TAILQ_FOREACH(n, &nets, entry) {
		fdb_forget(&n->fdb, lo, hi);
		for (int i = 0; i < n->nports; ) {
			if (n->ports[i]->vm == vm) {
				port_free(n->ports[i]);
				n->ports[i] = n->ports[--n->nports];
			} else
				i++;
		}
	}
	pthread_mutex_unlock(&sw.lock);
}

/* The counters of a NIC on an isolated network, read whole. */
void
switch_counters(const struct vm *vm, int i, uint64_t c[NIC_NCOUNTERS])
{
	pthread_mutex_lock(&sw.lock);
	c[0] = vm->nic_rx_bytes[i];
	c[1] = vm->nic_tx_bytes[i];
	c[2] = vm->nic_rx_packets[i];
	c[3] = vm->nic_tx_packets[i];
	c[4] = vm->nic_spoofed[i];
	c[5] = vm->nic_dropped[i];
	pthread_mutex_unlock(&sw.lock);
}

static struct port *
port_by_key(struct net *n, int64_t key)
{
	for (int i = 0; key >= 0 && i < n->nports; i++)
		if (n->ports[i]->key == key)
			return n->ports[i];
	return NULL;
}

/* The port whose own MAC (from its spec) mac is. */
static struct port *
port_by_mac(struct net *n, const uint8_t mac[6])
{
	for (int i = 0; i < n->nports; i++)
		if (memcmp(n->ports[i]->mac, mac, 6) == 0)
			return n->ports[i];
	return NULL;
}

/* Queue a frame for p's QEMU; written when this turn's frames are in. */
static void
port_put(struct port *p, const unsigned char *f, size_t len)
{
	if (p->fd < 0)
		return;		/* not connected: no NIC to deliver to */
	if (p->outlen + 4 + len > OUT_CAP) {
		p->vm->nic_dropped[p->nic]++;
		return;
	}
	be32_put(p->out + p->outlen, (uint32_t)len);
	memcpy(p->out + p->outlen + 4, f, len);
	p->outlen += 4 + len;
	p->vm->nic_rx_bytes[p->nic] += len;
	p->vm->nic_rx_packets[p->nic]++;
	if (!p->dirty) {
		p->dirty = 1;
		p->next_dirty = sw.dirty;
		sw.dirty = p;
	}
}

/* Write what is queued for p; wait for room when its QEMU is behind. */
static void
port_flush(struct port *p)
{
	while (p->fd >= 0 && p->outoff < p->outlen) {
		ssize_t w = send(p->fd, p->out + p->outoff, p->outlen -
		    p->outoff, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0) {
			port_unplug(p);
			return;
		}
		p->outoff += (size_t)w;
	}
	if (p->fd < 0)
		return;
	if (p->outoff == p->outlen)
		p->outoff = p->outlen = 0;
	else if (p->outoff > OUT_CAP / 2) {
		memmove(p->out, p->out + p->outoff, p->outlen - p->outoff);
		p->outlen -= p->outoff;
		p->outoff = 0;
	}
	int want = p->outlen > 0;
	if (want != p->out_armed) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP |
		    (want ? EPOLLOUT : 0), .data.u64 = p->serial };
		epoll_ctl(sw.epfd, EPOLL_CTL_MOD, p->fd, &ev);
		p->out_armed = want;
	}
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
switch_one(struct port *from, const unsigned char *f, size_t len)
{
	struct net *n = from->net;
	struct port *to;

	sw.frames++;
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
				port_put(to, f, len);
			return;
		}
	}
	for (int i = 0; i < n->nports; i++) {
		to = n->ports[i];
		if (to != from && (f[0] & 1 || !to->mac_filter))
			port_put(to, f, len);
	}
}

/*
 * What p's QEMU sent: every whole frame in one read.  A length no QEMU
 * sends means the stream is not QEMU's framing: the NIC is unplugged.
 */
static void
port_read(struct port *p)
{
	size_t off = 0;
	ssize_t r;

	r = read(p->fd, p->in + p->inlen, IN_CAP - p->inlen);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		port_unplug(p);
		return;
	}
	p->inlen += (size_t)r;
	while (p->inlen - off >= 4) {
		uint32_t len = be32_get(p->in + off);
		if (len > FRAME_MAX) {
			port_unplug(p);
			return;
		}
		if (p->inlen - off - 4 < len)
			break;
		if (len >= 14)
			switch_one(p, p->in + off + 4, len);
		off += 4 + len;
	}
	if (off > 0) {
		memmove(p->in, p->in + off, p->inlen - off);
		p->inlen -= off;
	}
}

static void *
switch_main(void *arg)
{
	struct epoll_event ev[64];

	(void)arg;
	for (;;) {
		int k = epoll_wait(sw.epfd, ev, 64, -1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		pthread_mutex_lock(&sw.lock);
		sw.wakeups++;
		for (int i = 0; i < k; i++) {
			struct port *p = port_by_serial(ev[i].data.u64);
			if (p == NULL || p->fd < 0)
				continue;	/* gone since the wait */
			if (ev[i].events & EPOLLOUT)
				port_flush(p);
			if (p->fd >= 0 && ev[i].events & (EPOLLIN | EPOLLHUP |
			    EPOLLERR | EPOLLRDHUP))
				port_read(p);
		}
		while (sw.dirty) {
			struct port *p = sw.dirty;
			sw.dirty = p->next_dirty;
			p->dirty = 0;
			port_flush(p);
		}
		pthread_mutex_unlock(&sw.lock);
	}
	log_warn("%s: epoll_wait; isolated networks stop", __func__);
	return NULL;
}

/* The thread, started with the first isolated network. */
static int
switch_start(char *err, size_t errlen)
{
	sigset_t all, old;
	int r;

	if (sw.started)
		return 0;
	if ((sw.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -1;
	}
	/* Signals are the loop's: the thread takes none. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&sw.thread, NULL, switch_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		snprintf(err, errlen, "switch thread: %s", strerror(r));
		close(sw.epfd);
		sw.epfd = -1;
		return -1;
	}
	pthread_setname_np(sw.thread, "vmgr-switch");
	sw.started = 1;
	return 0;
}

/* An isolated network: the switch takes its ports as its VMs start. */
int
switch_open(struct net *n, char *err, size_t errlen)
{
	char path[PATH_MAX];

	/* Earlier vmgrds switched through a datagram socket of the network's. */
	net_sock_path(n->id, path, sizeof(path));
	unlink(path);
	if (switch_start(err, errlen) < 0)
		return -1;
	pthread_mutex_lock(&sw.lock);
	ports_rebuild(n);
	pthread_mutex_unlock(&sw.lock);
	return 0;
}

void
switch_close(struct net *n)
{
	pthread_mutex_lock(&sw.lock);
	for (int i = 0; i < n->nports; i++)
		port_free(n->ports[i]);
	free(n->ports);
	n->ports = NULL;
	n->nports = 0;
	pthread_mutex_unlock(&sw.lock);
}

/* What the switch did, for `vmgr host` and /metrics. */
void
switch_stats(uint64_t *frames, uint64_t *wakeups, int *ports)
{
	pthread_mutex_lock(&sw.lock);
	*frames = sw.frames;
	*wakeups = sw.wakeups;
	*ports = sw.nall;
	pthread_mutex_unlock(&sw.lock);
}
