/*
 * net.c - the virtual networks as vmgrd holds them: each one's segment
 * (name, type, subnet), the VMs' addresses on it, and its JSON.
 *
 * An isolated network is an L2 segment for VMs only, switched by vmgrd
 * (net_switch.c), no root needed.  A bridge network (root only) is a
 * Linux bridge with a tap per NIC and a dnsmasq of vmgrd's
 * (net_bridge.c).  net_api.c opens and closes them, loads them at start
 * and serves the API.  They share net_int.h.
 */
#include "net_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "../lib/util.h"

struct netq nets = TAILQ_HEAD_INITIALIZER(nets);

struct net *
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

int
is_bridge(const struct net *n)
{
	return strcmp(n->type, "bridge") == 0;
}

void
net_file(const struct net *n, const char *ext, char *buf, size_t len)
{
	snprintf(buf, len, "%s/net/%lld.%s", vmgrd->state_dir,
	    (long long)n->id, ext);
}

char *
ipv4(unsigned a, char *buf, size_t len)
{
	struct in_addr ia = { htonl(a) };

	inet_ntop(AF_INET, &ia, buf, (socklen_t)len);
	return buf;
}

char *
cidr_str(unsigned addr, int prefix, char *buf, size_t len)
{
	struct in_addr a = { htonl(addr) };
	char s[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a, s, sizeof(s));
	snprintf(buf, len, "%s/%d", s, prefix);
	return buf;
}

int
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

json_t *
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
	if (!is_bridge(n))
		json_object_set_new(o, "mtu", json_integer(n->mtu));
	if (n->down[0])
		json_object_set_new(o, "error", json_string(n->down));
	if (is_bridge(n)) {
		char gw[16];
		json_object_set_new(o, "bridge", json_string(n->ifname));
		json_object_set_new(o, "adopted", json_boolean(n->adopted));
		json_object_set_new(o, "nat", json_boolean(n->nat));
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
int
net_nic_bridged_ip(const struct vm_spec *spec, int i)
{
	struct net *n = net_find(spec->nics[i].network);

	return n != NULL && is_bridge(n) && spec->nics[i].ip[0];
}

int
net_nic_static(const struct vm_spec *spec, int i, char *cidr, size_t len)
{
	struct net *n = net_find(spec->nics[i].network);

	/* Bridge NICs ask the network's DHCP server; NAT asks QEMU's. */
	if (n == NULL || is_bridge(n) || !spec->nics[i].ip[0])
		return 0;
	snprintf(cidr, len, "%s/%d", spec->nics[i].ip, n->prefix);
	return 1;
}

/* The MTU a NIC's guest should set, or 0 for the usual 1500. */
int
net_nic_mtu(const struct vm_spec *spec, int i)
{
	struct net *n = net_find(spec->nics[i].network);

	return n != NULL && !is_bridge(n) && n->mtu != 1500 ? n->mtu : 0;
}

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
		if (w > 0 && (size_t)w < len - o && net_nic_mtu(spec, i))
			w += snprintf(buf + o + w, len - o - (size_t)w,
			    " vmgr.mtu.eth%d=%d", i, n->mtu);
		if (w < 0 || (size_t)w >= len - o)
			break;
		o += (size_t)w;
	}
}
