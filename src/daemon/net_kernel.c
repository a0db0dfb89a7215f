/*
 * net_kernel.c - isolated networks on the kernel's bridge, in a network
 * namespace of vmgrd's own (vmgrd as root).
 *
 * The switch of net_switch.c moves frames between QEMU's stream sockets,
 * which carry no virtio-net header: guests then get no checksum offload,
 * no TSO and no GRO, and make and check every segment in software.  A tap
 * opened with IFF_VNET_HDR carries those, so a guest on a tap sends 64 KiB
 * segments whose checksums nobody computes.  As root, each isolated
 * network is therefore a Linux bridge ("vmgri<ID>") and each of its NICs a
 * tap ("vmgrt<VM>n<NIC>"), all inside one network namespace that only
 * vmgrd enters: the host's own interfaces, routes and firewall never see
 * them, and the namespace has no address, no route, no IPv6 and no link
 * to anything, so guests reach only each other.
 *
 * The namespace is made with the first isolated network and removed with
 * the last; it is bound to STATE/net/ns (as `ip netns add` binds its own),
 * so it outlives a vmgrd restart with its VMs running, and vmgrd enters it
 * again at start.  Port security is one nftables table in the namespace
 * ("bridge vmgr"): a verdict map from a tap's name to a chain of that NIC,
 * which drops and counts frames from any source MAC but the NIC's own;
 * the same table drops whatever the namespace's own stack would send to
 * the networks or take from them.  Counters are the taps' own
 * (/proc/net/dev of the namespace, read through a descriptor opened
 * inside it) and the chains' counters.
 *
 * Commands (`ip`, `nft`) run inside through nsenter; the tap's descriptor
 * QEMU gets is opened by vmgrd's loop thread after a setns() into the
 * namespace, and the thread goes back at once.  Called by net_api.c (a
 * network comes or goes), net_bridge.c (a NIC's tap) and main.c.
 */
#include "net_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <jansson.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

static char ns_path[PATH_MAX + 8];	/* STATE/net/ns */
static char ns_arg[PATH_MAX + 16];	/* --net=STATE/net/ns */
static int ns_fd = -1, host_fd = -1, dev_fd = -1;
static char why[PATH_MAX + 256];	/* why this switch */

/* Spoofed-frame counters, read in one `nft -j list` for all NICs. */
static struct {
	double	 at;
	int	 busy;		/* a read is running */
	int	 n;
	struct { int64_t vm; int nic; uint64_t packets; } *c;
} spoof;

/*
 * The tap of a VM's NIC, on a bridge network or on the kernel's switch
 * (net_bridge.c uses these too): "vmgrt<vmid>n<nic>"; "" when
 * that does not fit an interface name (a VM id past 99999999).
 */
void
nic_tap_name(const struct vm *vm, int nic, char *buf, size_t len)
{
	int w = snprintf(buf, len, "vmgrt%lldn%d", (long long)vm->id, nic);

	if (w < 0 || (size_t)w >= len || w > 15)
		buf[0] = '\0';
}

/* Open the existing tap device name, as QEMU would (vnet header on). */
int
net_tap_fd(const char *name)
{
	struct ifreq ifr;
	int fd;

	if ((fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)) < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%.15s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(fd);
		return errno = e, -1;
	}
	return fd;
}

static int kernel_ok;		/* the kernel's switch carries them */

int
kswitch_on(void)
{
	return kernel_ok;
}

static int
ns_enter(void)
{
	return setns(ns_fd, CLONE_NEWNET);
}

/* Back in the host's namespace; a thread left in vmgrd's would be worse
 * than no vmgrd. */
static void
ns_leave(void)
{
	if (setns(host_fd, CLONE_NEWNET) < 0)
		fatal("setns back to the host's network namespace");
}

/* Run ARGV inside the namespace; 0, or -1 with its words in err. */
static int
ns_run(char *const argv[], const char *input, char *err, size_t errlen)
{
	char *full[24], out[512];
	int n = 0;

	full[n++] = "nsenter";
	full[n++] = ns_arg;
	for (int i = 0; argv[i] && n < 23; i++)
		full[n++] = argv[i];
	full[n] = NULL;
	if (proc_run_sync(full, input, out, sizeof(out)) == 0)
		return 0;
	out[strcspn(out, "\n")] = '\0';
	if (err)
		snprintf(err, errlen, "%s %s: %s", argv[0], argv[1], out[0] ?
		    out : "cannot run it");
	return -1;
}

static int
is_nsfs(int fd)
{
	struct statfs sf;

	return fstatfs(fd, &sf) == 0 && sf.f_type == NSFS_MAGIC;
}

static void
write_proc(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, v, strlen(v)) < 0)
		log_warn("%s: %s", __func__, path);
	if (fd >= 0)
		close(fd);
}

/*
 * Make the namespace and bind it to ns_path: this thread moves into a new
 * one, which the bind mount keeps, and comes back.  No IPv6 inside: the
 * bridges and taps would get link-local addresses, and the namespace
 * would answer guests.
 */
static int
ns_make(char *err, size_t errlen)
{
	int fd;

	if ((fd = open(ns_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		snprintf(err, errlen, "%s: %s", ns_path, strerror(errno));
		return -1;
	}
	close(fd);
	if (unshare(CLONE_NEWNET) < 0) {
		snprintf(err, errlen, "a network namespace: %s", strerror(errno));
		return -1;
	}
	write_proc("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1\n");
	write_proc("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1\n");
	if (mount("/proc/thread-self/ns/net", ns_path, NULL, MS_BIND,
	    NULL) < 0) {
		snprintf(err, errlen, "binding the network namespace to %s: %s",
		    ns_path, strerror(errno));
		ns_leave();
		return -1;
	}
	ns_leave();
	return 0;
}

/*
 * The nftables table of the namespace, loaded at every start in one
 * transaction (each line is a no-op when its object is there): port
 * security's map and chain, and two chains that keep the namespace's own
 * stack out of the networks.  The bridges have no address, but a bridge
 * that comes up still reports its multicast groups (an IGMP report to
 * every port), and broadcasts reach its local port: nothing goes out of
 * the namespace's stack to a guest, and nothing from a guest goes into it.
 */
static const char ns_rules[] =
	    "add table bridge vmgr\n"
	    "add map bridge vmgr ports { type ifname : verdict; }\n"
	    "add chain bridge vmgr in { type filter hook prerouting "
	    "priority -200; policy accept; }\n"
	    "flush chain bridge vmgr in\n"
	    "add rule bridge vmgr in iifname vmap @ports\n"
	    "add chain bridge vmgr local { type filter hook input "
	    "priority 0; policy drop; }\n"
	    "add chain bridge vmgr out { type filter hook output "
	    "priority 0; policy drop; }\n";

static int
ns_table(char *err, size_t errlen)
{
	char *load[] = { "nft", "-f", "-", NULL };

	return ns_run(load, ns_rules, err, errlen);
}

static void
ns_close(void)
{
	if (ns_fd >= 0)
		close(ns_fd);
	if (dev_fd >= 0)
		close(dev_fd);
	ns_fd = dev_fd = -1;
}

/*
 * Whether this host can give isolated networks the kernel's switch: in a
 * namespace of its own, made for the trial and gone after it, this thread
 * makes a bridge and loads the nftables table (commands run by a child of
 * this thread are in its namespace).  0, or -1 with why not.
 */
static int
trial(char *err, size_t errlen)
{
	char out[512];
	char *bridge[] = { "ip", "link", "add", "vmgr-trial", "type", "bridge",
	    NULL };
	char *load[] = { "nft", "-f", "-", NULL };
	int rc = -1;

	if (unshare(CLONE_NEWNET) < 0) {
		snprintf(err, errlen, "a network namespace: %s", strerror(errno));
		return -1;
	}
	if (proc_run_sync(bridge, NULL, out, sizeof(out)) < 0) {
		out[strcspn(out, "\n")] = '\0';
		snprintf(err, errlen, "ip link add type bridge: %s", out[0] ?
		    out : "cannot run ip");
	} else if (proc_run_sync(load, ns_rules, out, sizeof(out)) < 0) {
		out[strcspn(out, "\n")] = '\0';
		snprintf(err, errlen, "%s", out[0] ? out : "nft is not "
		    "installed (Debian's package nftables)");
	} else
		rc = 0;
	ns_leave();
	return rc;
}

/* Enter the namespace bound at ns_path (made first if need be). */
static int
ns_attach(int make, char *err, size_t errlen)
{
	if (ns_fd >= 0)
		return 0;
	ns_fd = open(ns_path, O_RDONLY | O_CLOEXEC);
	if (ns_fd >= 0 && !is_nsfs(ns_fd)) {
		/* a file that is no namespace: a crash between making it
		 * and binding it */
		close(ns_fd);
		ns_fd = -1;
		if (umount2(ns_path, MNT_DETACH) < 0 && errno != EINVAL)
			log_warn("%s: %s", __func__, ns_path);
	}
	if (ns_fd < 0) {
		if (!make)
			return 0;
		if (ns_make(err, errlen) < 0)
			return -1;
		if ((ns_fd = open(ns_path, O_RDONLY | O_CLOEXEC)) < 0 ||
		    !is_nsfs(ns_fd)) {
			snprintf(err, errlen, "%s is no network namespace",
			    ns_path);
			ns_close();
			return -1;
		}
		log_info("isolated networks: made the network namespace %s",
		    ns_path);
	}
	if (ns_enter() < 0) {
		snprintf(err, errlen, "setns: %s", strerror(errno));
		ns_close();
		return -1;
	}
	dev_fd = open("/proc/thread-self/net/dev", O_RDONLY | O_CLOEXEC);
	ns_leave();
	if (dev_fd < 0 || ns_table(err, errlen) < 0) {
		if (dev_fd < 0)
			snprintf(err, errlen, "the namespace's /proc/net/dev: "
			    "%s", strerror(errno));
		ns_close();
		return -1;
	}
	return 0;
}

/*
 * No isolated network is left: the namespace goes (its bridges and taps
 * with it), so a state dir holds it only while it is used.
 */
static void
ns_drop(void)
{
	struct net *n;

	TAILQ_FOREACH(n, &nets, entry)
		if (n->kernel)
			return;
	ns_close();
	if (umount2(ns_path, MNT_DETACH) < 0 && errno != EINVAL &&
	    errno != ENOENT)
		log_warn("%s: %s", __func__, ns_path);
	if (unlink(ns_path) < 0 && errno != ENOENT)
		log_warn("%s: %s", __func__, ns_path);
	spoof.n = 0;
}

/*
 * --switch MODE: "auto" (the kernel's as root when it can be had, else
 * vmgrd's), "kernel", or "user".  -1 with err when "kernel" cannot be had.
 * The namespace is made with the first isolated network; one an earlier
 * vmgrd bound is entered now.
 */
int
kswitch_setup(const char *mode, char *err, size_t errlen)
{
	char dir[PATH_MAX], e[PATH_MAX + 128] = "";

	if (strcmp(mode, "user") == 0) {
		snprintf(why, sizeof(why), "--switch user");
		goto user;
	}
	if (geteuid() != 0) {
		snprintf(e, sizeof(e), "vmgrd is not root");
		goto fail;
	}
	if (access("/dev/net/tun", R_OK | W_OK) < 0) {
		snprintf(e, sizeof(e), "/dev/net/tun: %s", strerror(errno));
		goto fail;
	}
	snprintf(dir, sizeof(dir), "%s/net", vmgrd->state_dir);
	mkdir_p(dir, 0700);
	snprintf(ns_path, sizeof(ns_path), "%s/ns", dir);
	snprintf(ns_arg, sizeof(ns_arg), "--net=%s", ns_path);
	if ((host_fd < 0 && (host_fd = open("/proc/thread-self/ns/net",
	    O_RDONLY | O_CLOEXEC)) < 0)) {
		snprintf(e, sizeof(e), "the host's network namespace: %s",
		    strerror(errno));
		goto fail;
	}
	if (trial(e, sizeof(e)) < 0 || ns_attach(0, e, sizeof(e)) < 0)
		goto fail;
	kernel_ok = 1;
	snprintf(why, sizeof(why), "Linux bridges in vmgrd's network "
	    "namespace %s", ns_path);
	log_info("isolated networks: the kernel's bridges (%s)", why);
	return 0;
fail:
	ns_close();
	if (strcmp(mode, "kernel") == 0) {
		snprintf(err, errlen, "--switch kernel: %s", e);
		return -1;
	}
	snprintf(why, sizeof(why), "%s", e);
user:
	log_info("isolated networks: vmgrd's own switch (%s)", why);
	return 0;
}

json_t *
kswitch_host_json(void)
{
	return json_pack("{s:s, s:s}", "backend", kswitch_on() ? "kernel" :
	    "user", "reason", why);
}

static void
br_name(const struct net *n, char *buf, size_t len)
{
	snprintf(buf, len, "vmgri%lld", (long long)n->id);
}

/* The network's bridge, up, with its MTU: there already after a restart. */
int
kswitch_open(struct net *n, char *err, size_t errlen)
{
	char br[16], mtu[16];

	br_name(n, br, sizeof(br));
	if (strlen(br) > 15) {
		snprintf(err, errlen, "network id %lld is too large for a "
		    "bridge name", (long long)n->id);
		return -1;
	}
	if (ns_attach(1, err, errlen) < 0)
		return -1;
	snprintf(mtu, sizeof(mtu), "%d", n->mtu);
	char *add[] = { "ip", "link", "add", br, "type", "bridge",
	    "mcast_snooping", "0", NULL };
	char *up[] = { "ip", "link", "set", "dev", br, "mtu", mtu, "up", NULL };
	ns_run(add, NULL, NULL, 0);
	if (ns_run(up, NULL, err, errlen) < 0)
		return -1;
	n->kernel = 1;
	return 0;
}

void
kswitch_close(struct net *n)
{
	char br[16], err[256];

	br_name(n, br, sizeof(br));
	char *del[] = { "ip", "link", "del", br, NULL };
	if (ns_fd >= 0 && ns_run(del, NULL, err, sizeof(err)) < 0 &&
	    strstr(err, "Cannot find") == NULL)
		log_warnx("network %s: %s", n->name, err);
	n->kernel = 0;
	ns_drop();
}

/* Remove NIC nic's port security (whether it is there or not). */
static void
filter_del(const struct vm *vm, int nic, const char *tap)
{
	char rules[512];
	char *load[] = { "nft", "-f", "-", NULL };

	snprintf(rules, sizeof(rules),
	    "add chain bridge vmgr nic_%lld_%d\n"
	    "add element bridge vmgr ports { \"%s\" : jump nic_%lld_%d }\n"
	    "delete element bridge vmgr ports { \"%s\" }\n"
	    "flush chain bridge vmgr nic_%lld_%d\n"
	    "delete chain bridge vmgr nic_%lld_%d\n", (long long)vm->id, nic,
	    tap, (long long)vm->id, nic, tap, (long long)vm->id, nic,
	    (long long)vm->id, nic);
	ns_run(load, rules, NULL, 0);
}

void
kswitch_tap_down(const struct vm *vm, int nic)
{
	char tap[16];

	nic_tap_name(vm, nic, tap, sizeof(tap));
	char *del[] = { "ip", "link", "del", tap, NULL };
	ns_run(del, NULL, NULL, 0);
	filter_del(vm, nic, tap);
}

/*
 * NIC nic's tap, owned by QEMU's user, on its network's bridge, and (with
 * mac_filter) a chain that lets through only frames from its MAC.
 */
int
kswitch_tap_up(const struct vm *vm, int nic, const struct net *n,
    const char *tap, char *err, size_t errlen)
{
	char br[16], uid[16], mtu[16], rules[512];
	char *load[] = { "nft", "-f", "-", NULL };

	kswitch_tap_down(vm, nic);	/* a stale one */
	br_name(n, br, sizeof(br));
	snprintf(uid, sizeof(uid), "%u", priv_uid(vm));
	snprintf(mtu, sizeof(mtu), "%d", n->mtu);
	char *add[] = { "ip", "tuntap", "add", "dev", (char *)tap, "mode",
	    "tap", "user", uid, "group", uid, NULL };
	char *join[] = { "ip", "link", "set", "dev", (char *)tap, "mtu", mtu,
	    "master", br, "up", NULL };
	if (ns_run(add, NULL, err, errlen) < 0 || ns_run(join, NULL, err,
	    errlen) < 0)
		return -1;
	if (!vm->spec.nics[nic].mac_filter)
		return 0;
	/*
	 * The NIC's MAC is its own: a static, sticky entry, which learning
	 * never moves, so frames to it reach it alone even when an
	 * unfiltered NIC sends from it (the bridge would otherwise learn it
	 * there); and nothing is learned from the NIC, which may send from
	 * that MAC only.
	 */
	char *fdb[] = { "bridge", "fdb", "replace", (char *)vm->spec.nics[
	    nic].mac, "dev", (char *)tap, "master", "static", "sticky", NULL };
	char *nolearn[] = { "bridge", "link", "set", "dev", (char *)tap,
	    "learning", "off", NULL };
	if (ns_run(fdb, NULL, err, errlen) < 0 || ns_run(nolearn, NULL, err,
	    errlen) < 0)
		return -1;
	snprintf(rules, sizeof(rules),
	    "add chain bridge vmgr nic_%lld_%d\n"
	    "flush chain bridge vmgr nic_%lld_%d\n"
	    "add rule bridge vmgr nic_%lld_%d ether saddr != %s counter drop\n"
	    "add element bridge vmgr ports { \"%s\" : jump nic_%lld_%d }\n",
	    (long long)vm->id, nic, (long long)vm->id, nic, (long long)vm->id,
	    nic, vm->spec.nics[nic].mac, tap, (long long)vm->id, nic);
	if (ns_run(load, rules, err, errlen) < 0)
		return -1;
	return 0;
}

/* Open the tap as QEMU would (vnet header on), from inside. */
int
kswitch_tap_open(const char *tap)
{
	int fd, e;

	if (ns_enter() < 0)
		return -1;
	fd = net_tap_fd(tap);
	e = errno;
	ns_leave();
	errno = e;
	return fd;
}

/* The chains' counters of one `nft -j list table bridge vmgr`. */
static void
spoof_parse(const char *out)
{
	json_t *j = json_loads(out, 0, NULL), *a, *o;
	size_t i;

	if (j == NULL)
		return;		/* the last counts stand */
	spoof.n = 0;
	a = json_object_get(j, "nftables");
	json_array_foreach(a, i, o) {
		json_t *r = json_object_get(o, "rule"), *x, *e;
		long long vmid;
		int nic;
		size_t k;
		const char *ch = json_string_value(json_object_get(r, "chain"));
		if (ch == NULL || sscanf(ch, "nic_%lld_%d", &vmid, &nic) != 2)
			continue;
		x = json_object_get(r, "expr");
		json_array_foreach(x, k, e) {
			json_t *c = json_object_get(e, "counter");
			void *grown;
			if (c == NULL)
				continue;
			if ((grown = realloc(spoof.c, (size_t)(spoof.n + 1) *
			    sizeof(*spoof.c))) == NULL)
				break;
			spoof.c = grown;
			spoof.c[spoof.n].vm = vmid;
			spoof.c[spoof.n].nic = nic;
			spoof.c[spoof.n++].packets = (uint64_t)json_integer_value(
			    json_object_get(c, "packets"));
		}
	}
	json_decref(j);
}

static void
spoof_done(int status, const char *output, void *arg)
{
	(void)arg;
	spoof.busy = 0;
	spoof.at = now_mono();
	if (status == 0)
		spoof_parse(output);
}

/*
 * Every NIC's spoofed-frame count is read by nft, a process: never waited
 * for on the loop.  A read older than a second starts the next, and the
 * counts read last are what is asked meanwhile.
 */
static void
spoof_read(void)
{
	char *list[] = { "nsenter", ns_arg, "nft", "-j", "list", "table",
	    "bridge", "vmgr", NULL };

	if (spoof.busy || (spoof.at > 0 && now_mono() - spoof.at < 1.0))
		return;
	if (proc_run(vmgrd->base, list, spoof_done, NULL) == 0)
		spoof.busy = 1;
}

/* 1 when the tap is in the namespace (its line in /proc/net/dev). */
static int
dev_line(const char *tap, uint64_t v[16])
{
	char buf[64 << 10], want[24];
	ssize_t n;
	char *p;

	if (lseek(dev_fd, 0, SEEK_SET) < 0 ||
	    (n = read(dev_fd, buf, sizeof(buf) - 1)) <= 0)
		return 0;
	buf[n] = '\0';
	snprintf(want, sizeof(want), "%s:", tap);
	for (p = buf; (p = strstr(p, want)) != NULL; p++) {
		if (p != buf && p[-1] != ' ' && p[-1] != '\n')
			continue;
		p += strlen(want);
		for (int k = 0; k < 16; k++)
			v[k] = strtoull(p, &p, 10);
		return 1;
	}
	return 0;
}

int
kswitch_has_tap(const struct vm *vm, int nic)
{
	char tap[16];
	uint64_t v[16];

	nic_tap_name(vm, nic, tap, sizeof(tap));
	return ns_fd >= 0 && dev_line(tap, v);
}

/*
 * As the guest sees them: the tap's tx is the guest's rx.  Frames the
 * tap dropped on their way to QEMU (its queue full) are its tx drops.
 */
void
kswitch_counters(const struct vm *vm, int nic, uint64_t c[NIC_NCOUNTERS])
{
	char tap[16];
	uint64_t v[16] = { 0 };

	nic_tap_name(vm, nic, tap, sizeof(tap));
	if (ns_fd >= 0)
		dev_line(tap, v);
	c[0] = v[8];
	c[1] = v[0];
	c[2] = v[9];
	c[3] = v[1];
	c[5] = v[11];
	c[4] = 0;	/* an unfiltered NIC has no spoofed frames */
	if (!vm->spec.nics[nic].mac_filter)
		return;
	spoof_read();
	for (int i = 0; i < spoof.n; i++)
		if (spoof.c[i].vm == vm->id && spoof.c[i].nic == nic)
			c[4] = spoof.c[i].packets;
}
