/*
 * fdb.h - a switch's forwarding database: which port each learned MAC
 * address was last seen on.  Pure and fixed in size; used by vmgrd's
 * isolated networks (daemon/net.c).  A port is an opaque 64-bit key the
 * caller chooses (vmgrd: VM id * 16 + NIC), never a pointer, so an entry
 * can outlive its port without pointing at freed memory: the caller
 * resolves a key to a live port, or finds none.
 */
#ifndef VMGR_FDB_H
#define VMGR_FDB_H

#include <stddef.h>
#include <stdint.h>

#define FDB_MAX		256

struct fdb_entry {
	uint8_t		 mac[6];
	int64_t		 port;
	uint64_t	 seen;	/* fdb's clock when last learned or refreshed */
};

struct fdb {
	struct fdb_entry e[FDB_MAX];
	int		 n;
	uint64_t	 clock;
};

void	 fdb_init(struct fdb *);

/*
 * mac was seen as a source on port: remember or refresh it.  Group
 * addresses are never learned.  When the table is full, the entry seen
 * longest ago gives its place (never one just refreshed).
 */
void	 fdb_learn(struct fdb *, const uint8_t mac[6], int64_t port);

/* The port mac was last seen on, or -1. */
int64_t	 fdb_lookup(const struct fdb *, const uint8_t mac[6]);

/* Forget every entry whose port is in [lo, hi]; returns how many went. */
int	 fdb_forget(struct fdb *, int64_t lo, int64_t hi);

#endif
