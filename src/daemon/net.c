/*
 * net.c - isolated virtual networks: an L2 segment for VMs only, no root
 * needed.  Each network is a unix datagram socket of vmgrd's own
 * (STATE/net/ID.sock, in a 0700 directory, so no other user can reach
 * it); each NIC on it is a QEMU `-netdev dgram` whose local end is
 * vm/VMID/netN.sock.  vmgrd switches the frames: it learns which MAC sits
 * behind which NIC, sends a frame to its owner, and floods broadcasts and
 * unknown destinations to the network's other NICs.  Frames never cross to
 * another network, and every NIC's traffic is counted.
 */
#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"

#define FRAME_MAX	65536
#define LEARN_MAX	256

struct learned {
	unsigned char	mac[6];
	struct vm	*vm;
	int		nic;
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
	struct learned	 learned[LEARN_MAX];
	int		 nlearned;
};
TAILQ_HEAD(netq, net);
static struct netq nets = TAILQ_HEAD_INITIALIZER(nets);

void
net_sock_path(int64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/net/%lld.sock", vmgrd->state_dir, (long long)id);
}

void
nic_sock_path(const struct vm *vm, int nic, char *buf, size_t len)
{
	snprintf(buf, len, "%s/net%d.sock", vm->dir, nic);
}

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

/* The VM and NIC whose QEMU sent from this address, or NULL. */
static struct vm *
port_of(const struct net *n, const char *path, int *nic)
{
	struct vm *vm;
	char p[PATH_MAX];

	TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
		if (vm->pid <= 0)
			continue;
		for (int i = 0; i < vm->spec.nnics; i++) {
			if (strcmp(vm->spec.nics[i].network, n->name) != 0)
				continue;
			nic_sock_path(vm, i, p, sizeof(p));
			if (strcmp(p, path) == 0) {
				*nic = i;
				return vm;
			}
		}
	}
	return NULL;
}

static void
send_to(struct net *n, struct vm *vm, int nic, const unsigned char *f,
    size_t len)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char path[PATH_MAX];

	nic_sock_path(vm, nic, path, sizeof(path));
	if (strlen(path) >= sizeof(sun.sun_path))
		return;
	strcpy(sun.sun_path, path);
	if (sendto(n->fd, f, len, MSG_DONTWAIT, (struct sockaddr *)&sun,
	    sizeof(sun)) == (ssize_t)len) {
		vm->nic_rx_bytes[nic] += len;
		vm->nic_rx_packets[nic]++;
	}
	/* A full receiver drops the frame, as a switch would. */
}

static void
learn(struct net *n, const unsigned char *mac, struct vm *vm, int nic)
{
	int i;

	if (mac[0] & 1)
		return;		/* never learn a group address */
	for (i = 0; i < n->nlearned; i++)
		if (memcmp(n->learned[i].mac, mac, 6) == 0)
			break;
	if (i == n->nlearned) {
		if (n->nlearned == LEARN_MAX)
			i = 0;	/* full: forget the oldest */
		else
			n->nlearned++;
	}
	memcpy(n->learned[i].mac, mac, 6);
	n->learned[i].vm = vm;
	n->learned[i].nic = nic;
}

static void
switch_frame(evutil_socket_t fd, short what, void *arg)
{
	static unsigned char f[FRAME_MAX];
	struct net *n = arg;
	struct sockaddr_un src;
	socklen_t slen = sizeof(src);
	struct vm *from, *vm;
	int from_nic;

	(void)what;
	for (int burst = 0; burst < 64; burst++) {
		ssize_t len = recvfrom(fd, f, sizeof(f), MSG_DONTWAIT,
		    (struct sockaddr *)&src, &slen);
		if (len < 0)
			return;
		if (len < 14 || slen <= sizeof(sa_family_t))
			continue;
		src.sun_path[sizeof(src.sun_path) - 1] = '\0';
		/* Only the NICs of running VMs on this network may send. */
		if ((from = port_of(n, src.sun_path, &from_nic)) == NULL)
			continue;
		from->nic_tx_bytes[from_nic] += (uint64_t)len;
		from->nic_tx_packets[from_nic]++;
		learn(n, f + 6, from, from_nic);
		if (!(f[0] & 1)) {
			int known = 0;
			for (int i = 0; i < n->nlearned; i++)
				if (memcmp(n->learned[i].mac, f, 6) == 0 &&
				    n->learned[i].vm->pid > 0) {
					if (n->learned[i].vm != from)
						send_to(n, n->learned[i].vm,
						    n->learned[i].nic, f,
						    (size_t)len);
					known = 1;
					break;
				}
			if (known)
				continue;
		}
		TAILQ_FOREACH(vm, &vmgrd->vms, entry) {
			if (vm->pid <= 0)
				continue;
			for (int i = 0; i < vm->spec.nnics; i++)
				if ((vm != from || i != from_nic) &&
				    strcmp(vm->spec.nics[i].network, n->name) ==
				    0)
					send_to(n, vm, i, f, (size_t)len);
		}
		slen = sizeof(src);
	}
}

/* A VM is gone: it may not be the target of a learned address. */
void
net_forget_vm(const struct vm *vm)
{
	struct net *n;

	TAILQ_FOREACH(n, &nets, entry)
		for (int i = 0; i < n->nlearned; i++)
			if (n->learned[i].vm == vm)
				n->learned[i] = n->learned[--n->nlearned];
}

static int
net_open(struct net *n)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char dir[PATH_MAX];
	int buf = 1 << 20;

	snprintf(dir, sizeof(dir), "%s/net", vmgrd->state_dir);
	mkdir_p(dir, 0700);
	net_sock_path(n->id, dir, sizeof(dir));
	if (strlen(dir) >= sizeof(sun.sun_path))
		return -1;
	strcpy(sun.sun_path, dir);
	unlink(sun.sun_path);
	if ((n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) < 0 || bind(n->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		log_warn("%s: %s", __func__, sun.sun_path);
		if (n->fd >= 0)
			close(n->fd);
		n->fd = -1;
		return -1;
	}
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
	json_t *members = json_array();
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		for (int i = 0; i < vm->spec.nnics; i++)
			if (strcmp(vm->spec.nics[i].network, n->name) == 0)
				json_array_append_new(members, json_pack(
				    "{s:s, s:i, s:s, s:s, s:b}", "vm",
				    vm->spec.name, "nic", i, "mac",
				    vm->spec.nics[i].mac, "ip",
				    vm->spec.nics[i].ip, "running", vm->pid > 0));
	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:o}", "id",
	    (json_int_t)n->id, "name", n->name, "type", n->type, "subnet",
	    cidr_str(n->addr, n->prefix, cidr, sizeof(cidr)), "created_at",
	    fmt_time_ms(n->created_at, when, sizeof(when)), "members", members);
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
		if (n == NULL || !spec->nics[i].ip[0])
			continue;
		int w = snprintf(buf + o, len - o, " vmgr.ip.eth%d=%s/%d", i,
		    spec->nics[i].ip, n->prefix);
		if (w < 0 || (size_t)w >= len - o)
			break;
		o += (size_t)w;
	}
}

static int
load_one(struct net *n)
{
	if (net_open(n) < 0)
		return -1;
	TAILQ_INSERT_TAIL(&nets, n, entry);
	return 0;
}

static int
load_cb(int64_t id, const char *name, const char *type, const char *subnet,
    int64_t created_at, void *arg)
{
	struct net *n = calloc(1, sizeof(*n));

	(void)arg;
	if (n == NULL)
		return -1;
	n->id = id;
	n->fd = -1;
	snprintf(n->name, sizeof(n->name), "%s", name);
	snprintf(n->type, sizeof(n->type), "%s", type);
	n->created_at = created_at;
	if (spec_cidr_parse(subnet, &n->addr, &n->prefix) < 0 ||
	    load_one(n) < 0) {
		log_warnx("%s: network %s cannot be set up", __func__, name);
		free(n);
	}
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

void
net_api_create(struct evhttp_request *req, json_t *body)
{
	const char *key, *name, *type = "isolated", *subnet = NULL;
	char auto_subnet[32], cidr[32];
	struct net *n, *o;
	json_t *v;

	json_object_foreach(body, key, v)
		if (strcmp(key, "name") && strcmp(key, "type") &&
		    strcmp(key, "subnet")) {
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
	if (strcmp(type, "bridge") == 0) {
		api_reply_error(req, 422, "not_supported", "bridge networks are "
		    "not available in this version; isolated networks are");
		return;
	}
	if (net_find(name)) {
		api_reply_error(req, 409, "exists", "a network named \"%s\" "
		    "already exists", name);
		return;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL) {
		api_reply_error(req, 500, "no_memory", "out of memory");
		return;
	}
	n->fd = -1;
	if (subnet == NULL) {
		/* The first free 10.N.0.0/24, N from 10 up. */
		for (int k = 10; k < 256 && subnet == NULL; k++) {
			snprintf(auto_subnet, sizeof(auto_subnet), "10.%d.0.0/24",
			    k);
			unsigned a;
			int p, clash = 0;
			spec_cidr_parse(auto_subnet, &a, &p);
			TAILQ_FOREACH(o, &nets, entry)
				clash |= o->addr == a;
			if (!clash)
				subnet = auto_subnet;
		}
	}
	if (subnet == NULL || spec_cidr_parse(subnet, &n->addr, &n->prefix) <
	    0) {
		free(n);
		api_reply_error(req, 422, "invalid_value", "subnet must be an "
		    "IPv4 network such as 10.10.0.0/24 (prefix 8 to 30, no host "
		    "bits)");
		return;
	}
	TAILQ_FOREACH(o, &nets, entry) {
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
	n->created_at = now_unix_ms();
	if (db_net_insert(vmgrd->db, n->name, n->type, cidr_str(n->addr,
	    n->prefix, cidr, sizeof(cidr)), n->created_at, &n->id) < 0) {
		free(n);
		api_reply_error(req, db_full(vmgrd->db) ? 507 : 500, "database",
		    "%s", db_errmsg(vmgrd->db));
		return;
	}
	if (load_one(n) < 0) {
		db_net_delete(vmgrd->db, n->id);
		free(n);
		api_reply_error(req, 500, "socket", "cannot open the network's "
		    "socket");
		return;
	}
	log_info("network %s created (%s, %s)", n->name, n->type, cidr);
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
