/*
 * net_int.h - what the files of the networks (net*.c) share and nobody
 * else may use.  daemon.h holds what they offer the layers above.
 */
#ifndef VMGR_NET_INT_H
#define VMGR_NET_INT_H

#include "daemon.h"
#include "../core/fdb.h"

struct port;		/* net_switch.c's */

/*
 * An isolated network's largest MTU, and its default: passt's, frames of
 * 64 KiB less the Ethernet header, rounded to whole words.  The switch's
 * NICs have no offloads (no TSO, no checksums), so a large MTU is what
 * makes guests send few frames.
 */
#define NET_MTU_MAX	65520

struct net {
	TAILQ_ENTRY(net) entry;
	int64_t		 id;
	char		 name[SPEC_NAME_MAX + 1];
	char		 type[16];
	unsigned	 addr;		/* network address, host order */
	int		 prefix;
	int64_t		 created_at;
	struct port	**ports;	/* isolated: its running NICs */
	int		 nports;
	struct fdb	 fdb;		/* MACs learned from unfiltered ports */
	char		 ifname[16];	/* bridge: the Linux bridge */
	int		 adopted;	/* the user's bridge, used as it is */
	int		 nat;		/* bridge: NAT to the host's uplink */
	int		 kernel;	/* isolated, on net_kernel.c's bridge */
	int		 mtu;		/* the guests' MTU: 1500, or up to 65520 */
	char		 down[256];	/* why it could not be set up, or "" */
	pid_t		 dnsmasq;
	struct proc_watch *dnsmasq_watch;
	struct event	*hup;		/* a SIGHUP waiting for it to be ready */
};
TAILQ_HEAD(netq, net);

/* net.c: the segments */
extern struct netq nets;
struct net	*net_find(const char *name);
int	 is_bridge(const struct net *);
void	 net_file(const struct net *, const char *ext, char *buf, size_t len);
char	*ipv4(unsigned a, char *buf, size_t len);
char	*cidr_str(unsigned addr, int prefix, char *buf, size_t len);
int	 in_use_by(const struct net *, char *who, size_t len);
json_t	*net_json(const struct net *);

/* net_switch.c: isolated networks */
int	 switch_open(struct net *, char *err, size_t errlen);
void	 switch_close(struct net *);
void	 switch_counters(const struct vm *, int nic, uint64_t c[NIC_NCOUNTERS]);

/* net_kernel.c: isolated networks on the kernel's bridge (root) */
int	 kswitch_open(struct net *, char *err, size_t errlen);
void	 kswitch_close(struct net *);
int	 kswitch_tap_up(const struct vm *, int nic, const struct net *,
	    const char *tap, char *err, size_t errlen);
void	 kswitch_tap_down(const struct vm *, int nic);
int	 kswitch_tap_open(const char *tap);
int	 kswitch_has_tap(const struct vm *, int nic);
void	 kswitch_counters(const struct vm *, int nic,
	    uint64_t c[NIC_NCOUNTERS]);

/* net_bridge.c: bridge networks */
int	 net_tap_fd(const char *tap);
void	 if_alias(char *buf, size_t len, const char *what, int64_t id,
	    int nic);
int	 if_exists(const char *ifname);
int	 if_ours(const char *ifname, const char *alias);
int	 if_is_bridge(const char *ifname);
int	 bridge_up(struct net *, char *err, size_t errlen);
void	 bridge_down(struct net *);
void	 bridge_close(struct net *);

#endif
