/*
 * net_api.c - a network's life: open and close it, load them all at
 * start, and the API's create, list, get and delete.
 */
#include "net_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"

static int
net_open(struct net *n, char *err, size_t errlen)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/net", vmgrd->state_dir);
	mkdir_p(dir, 0700);
	if (is_bridge(n))
		return bridge_up(n, err, errlen);
	return kswitch_on() ? kswitch_open(n, err, errlen) :
	    switch_open(n, err, errlen);
}

static void
net_close(struct net *n)
{
	if (is_bridge(n))
		bridge_close(n);
	else if (n->kernel)
		kswitch_close(n);
	else
		switch_close(n);
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
	snprintf(n->name, sizeof(n->name), "%s", r->name);
	snprintf(n->type, sizeof(n->type), "%s", r->type);
	snprintf(n->ifname, sizeof(n->ifname), "%s", r->ifname ? r->ifname :
	    "");
	n->adopted = r->adopted;
	n->nat = r->nat;
	n->mtu = r->mtu;
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

int
net_api_list(struct api_call *c)
{
	json_t *arr = json_array();
	struct net *n;

	TAILQ_FOREACH(n, &nets, entry)
		json_array_append_new(arr, net_json(n));
	return api_ok(c, 200, arr);
}

int
net_api_get(struct api_call *c)
{
	const char *name = c->route.arg[0];
	struct net *n = net_find(name);

	if (n == NULL)
		return api_err(&c->err, 404, "no_such_network", "no network "
		    "named \"%s\"", name);
	return api_ok(c, 200, net_json(n));
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

/* What a POST /v1/networks asks for, once checked. */
struct net_req {
	const char	*name, *type, *subnet;
	const char	*bridge;	/* a new bridge's name, or NULL */
	const char	*adopt;		/* the user's bridge, or NULL */
	int		 nat;		/* NAT to the host's uplink */
	int		 mtu;
};

/* The body, checked against the networks and the host: 0, or -1. */
static int
net_req_check(json_t *body, struct net_req *r, struct api_err *e)
{
	static const char *const keys[] = { "name", "type", "subnet",
	    "bridge", "adopt", "nat", "mtu", NULL };
	json_t *jbridge = json_object_get(body, "bridge");
	json_t *jadopt = json_object_get(body, "adopt");
	json_t *jnat = json_object_get(body, "nat");
	struct net *o;

	if (api_body_keys(e, body, keys) < 0)
		return -1;
	r->name = json_string_value(json_object_get(body, "name"));
	r->type = "isolated";
	if (json_object_get(body, "type"))
		r->type = json_string_value(json_object_get(body, "type"));
	r->subnet = NULL;
	if (json_object_get(body, "subnet"))
		r->subnet = json_string_value(json_object_get(body, "subnet"));
	r->bridge = json_string_value(jbridge);
	r->adopt = json_string_value(jadopt);
	if (jnat && !json_is_boolean(jnat))
		return api_err(e, 422, "invalid_value", "nat must be true or "
		    "false");
	r->nat = json_is_true(jnat);
	json_t *jmtu = json_object_get(body, "mtu");
	double mtu = json_number_value(jmtu);	/* bodies decode as reals */
	r->mtu = 1500;
	if (jmtu && (!json_is_number(jmtu) || !(mtu >= 1280) ||
	    mtu > NET_MTU_MAX || mtu != (double)(int)mtu))
		return api_err(e, 422, "invalid_value", "mtu must be a whole "
		    "number from 1280 to %d", NET_MTU_MAX);
	if (r->name == NULL || !spec_name_valid(r->name) ||
	    strcmp(r->name, "nat") == 0 || strcmp(r->name, "default") == 0 ||
	    strcmp(r->name, "user") == 0)
		return api_err(e, 422, "invalid_name", "a network needs a "
		    "valid name (a-z 0-9 _ . -; not nat, default or user)");
	if (r->type == NULL || (strcmp(r->type, "isolated") != 0 &&
	    strcmp(r->type, "bridge") != 0))
		return api_err(e, 422, "invalid_value", "type must be isolated "
		    "or bridge");
	if ((jbridge || jadopt) && strcmp(r->type, "bridge") != 0)
		return api_err(e, 422, "invalid_value", "bridge and adopt are "
		    "for bridge networks");
	if ((jbridge && !ifname_valid(r->bridge)) || (jadopt &&
	    !ifname_valid(r->adopt)) || (jbridge && jadopt))
		return api_err(e, 422, "invalid_value", "give bridge (a new "
		    "interface's name) or adopt (an existing bridge's), 1 to "
		    "15 of A-Z a-z 0-9 _ . -");
	if (jmtu && strcmp(r->type, "isolated") != 0)
		return api_err(e, 422, "invalid_value", "mtu is for isolated "
		    "networks (a bridge's taps have the kernel's offloads)");
	if (strcmp(r->type, "isolated") == 0)
		r->mtu = jmtu ? (int)mtu : NET_MTU_MAX;
	if (r->nat && (strcmp(r->type, "bridge") != 0 || jadopt))
		return api_err(e, 422, "invalid_value", "nat is for bridges of "
		    "vmgr's own making (an isolated network has no way out; an "
		    "adopted bridge's network is its own)");
	if (jadopt && json_object_get(body, "subnet"))
		return api_err(e, 422, "invalid_value", "an adopted bridge's "
		    "addresses are its network's: give no subnet");
	if (strcmp(r->type, "bridge") == 0 && geteuid() != 0)
		return api_err(e, 403, "needs_root", "bridge networks need "
		    "vmgrd to run as root (a bridge, taps, a DHCP server); "
		    "isolated networks do not");
	if (net_find(r->name))
		return api_err(e, 409, "exists", "a network named \"%s\" "
		    "already exists", r->name);
	/* vmgr never takes an interface over unless told to adopt it. */
	if (r->bridge && (if_exists(r->bridge) || net_by_ifname(r->bridge)))
		return api_err(e, 409, "interface_exists", "the host already "
		    "has an interface %s; vmgr makes bridges of its own, or "
		    "uses an existing one as it is with --adopt-bridge %s",
		    r->bridge, r->bridge);
	if (r->adopt) {
		if (!if_exists(r->adopt) || !if_is_bridge(r->adopt))
			return api_err(e, 422, "not_a_bridge", "%s is not a "
			    "bridge of this host", r->adopt);
		if ((o = net_by_ifname(r->adopt)) != NULL)
			return api_err(e, 409, "interface_in_use", "%s is the "
			    "bridge of network %s already", r->adopt, o->name);
	}
	return 0;
}

/*
 * n's subnet: the one asked for, or the first free 10.N.0.0/24 (N from
 * 10 up); none for an adopted bridge.  0, or -1 if it is bad or taken.
 */
static int
net_subnet(struct net *n, const char *subnet, struct api_err *e)
{
	char auto_subnet[32], cidr[32];
	struct net *o;

	if (n->adopted)
		return 0;
	for (int k = 10; subnet == NULL && k < 256; k++) {
		snprintf(auto_subnet, sizeof(auto_subnet), "10.%d.0.0/24", k);
		unsigned a;
		int p, clash = 0;
		spec_cidr_parse(auto_subnet, &a, &p);
		TAILQ_FOREACH(o, &nets, entry)
			clash |= !o->adopted && o->addr == a;
		if (!clash)
			subnet = auto_subnet;
	}
	if (subnet == NULL || spec_cidr_parse(subnet, &n->addr,
	    &n->prefix) < 0)
		return api_err(e, 422, "invalid_value", "subnet must be an "
		    "IPv4 network such as 10.10.0.0/24 (prefix 8 to 30, no "
		    "host bits)");
	TAILQ_FOREACH(o, &nets, entry) {
		if (o->adopted)
			continue;
		int p = o->prefix < n->prefix ? o->prefix : n->prefix;
		unsigned mask = ~0u << (32 - p);
		if ((o->addr & mask) == (n->addr & mask))
			return api_err(e, 409, "subnet_overlaps", "subnet %s "
			    "overlaps %s of network %s", subnet, cidr_str(
			    o->addr, o->prefix, cidr, sizeof(cidr)), o->name);
	}
	return 0;
}

/* A database error of a network's write: full (507) or not (500). */
static int
net_db_err(struct api_err *e)
{
	return api_err(e, db_full(vmgrd->db) ? 507 : 500, "database", "%s",
	    db_errmsg(vmgrd->db));
}

int
net_api_create(struct api_call *c)
{
	char cidr[32] = "", err[256];
	struct net_req r = { 0 };
	struct net *n;

	if (net_req_check(c->body, &r, &c->err) < 0)
		return API_FAIL;
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return api_err(&c->err, 500, "no_memory", "out of memory");
	n->adopted = r.adopt != NULL;
	n->nat = r.nat;
	n->mtu = r.mtu;
	if (net_subnet(n, r.subnet, &c->err) < 0) {
		free(n);
		return API_FAIL;
	}
	snprintf(n->name, sizeof(n->name), "%s", r.name);
	snprintf(n->type, sizeof(n->type), "%s", r.type);
	snprintf(n->ifname, sizeof(n->ifname), "%s", r.adopt ? r.adopt :
	    r.bridge ? r.bridge : "");
	n->created_at = now_unix_ms();
	if (!n->adopted)
		cidr_str(n->addr, n->prefix, cidr, sizeof(cidr));
	struct net_row row = { .name = n->name, .type = n->type, .subnet = cidr,
	    .created_at = n->created_at, .ifname = n->ifname, .adopted =
	    n->adopted, .nat = n->nat, .mtu = n->mtu };
	if (db_net_insert(vmgrd->db, &row, &n->id) < 0) {
		free(n);
		return net_db_err(&c->err);
	}
	if (is_bridge(n) && !n->ifname[0]) {
		pick_ifname(n);
		if (db_net_set_ifname(vmgrd->db, n->id, n->ifname) < 0) {
			db_net_delete(vmgrd->db, n->id);
			free(n);
			return net_db_err(&c->err);
		}
	}
	if (net_open(n, err, sizeof(err)) < 0) {
		db_net_delete(vmgrd->db, n->id);
		if (is_bridge(n))
			bridge_down(n);
		free(n);
		return api_err(&c->err, 500, "network_setup", "cannot set up "
		    "network %s: %s", r.name, err);
	}
	TAILQ_INSERT_TAIL(&nets, n, entry);
	log_info("network %s created (%s, %s%s%s)", n->name, n->type,
	    n->adopted ? "adopting " : cidr, is_bridge(n) && !n->adopted ?
	    ", bridge " : "", is_bridge(n) ? n->ifname : "");
	return api_ok(c, 201, net_json(n));
}

int
net_api_delete(struct api_call *c)
{
	const char *name = c->route.arg[0];
	struct net *n = net_find(name);
	char who[SPEC_NAME_MAX + 1];

	if (n == NULL)
		return api_err(&c->err, 404, "no_such_network", "no network "
		    "named \"%s\"", name);
	if (in_use_by(n, who, sizeof(who)))
		return api_err(&c->err, 409, "network_in_use", "network %s is "
		    "used by VM %s; delete the VM or its NIC first", name, who);
	if (db_net_delete(vmgrd->db, n->id) < 0)
		return api_err(&c->err, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
	TAILQ_REMOVE(&nets, n, entry);
	net_close(n);
	log_info("network %s deleted", name);
	free(n);
	return api_ok(c, 200, json_pack("{s:s, s:s}", "name", name,
	    "state", "deleted"));
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

	struct net *n = net_find(vm->spec.nics[i].network);

	if (n && n->kernel) {
		kswitch_counters(vm, i, c);
		return;
	}
	if (!net_nic_is_tap(vm, i)) {
		switch_counters(vm, i, c);
		return;
	}
	/* The kernel's bridge switches taps. */
	c[4] = c[5] = NIC_UNCOUNTED;
	nic_tap_name(vm, i, tap, sizeof(tap));
	for (int k = 0; k < 4; k++) {
		snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s",
		    tap, f[k]);
		c[k] = (s = read_file(path, 64, NULL)) ? strtoull(s, NULL, 10) :
		    0;
		free(s);
	}
}
