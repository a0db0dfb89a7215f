/*
 * fdb.c - the forwarding database of fdb.h.  A flat table searched
 * linearly: 256 entries of 24 bytes, which a switch of a few dozen NICs
 * never fills.
 */
#include "fdb.h"

#include <string.h>

void
fdb_init(struct fdb *f)
{
	memset(f, 0, sizeof(*f));
}

static int
find(const struct fdb *f, const uint8_t mac[6])
{
	for (int i = 0; i < f->n; i++)
		if (memcmp(f->e[i].mac, mac, 6) == 0)
			return i;
	return -1;
}

void
fdb_learn(struct fdb *f, const uint8_t mac[6], int64_t port)
{
	int i;

	if (mac[0] & 1)
		return;		/* a group address is nobody's */
	if ((i = find(f, mac)) < 0) {
		if (f->n < FDB_MAX)
			i = f->n++;
		else {
			i = 0;
			for (int k = 1; k < f->n; k++)
				if (f->e[k].seen < f->e[i].seen)
					i = k;
		}
		memcpy(f->e[i].mac, mac, 6);
	}
	f->e[i].port = port;
	f->e[i].seen = ++f->clock;
}

int64_t
fdb_lookup(const struct fdb *f, const uint8_t mac[6])
{
	int i = find(f, mac);

	return i < 0 ? -1 : f->e[i].port;
}

int
fdb_forget(struct fdb *f, int64_t lo, int64_t hi)
{
	int gone = 0;

	/* The last entry moves into the hole: look at slot i again. */
	for (int i = 0; i < f->n; ) {
		if (f->e[i].port >= lo && f->e[i].port <= hi) {
			f->e[i] = f->e[--f->n];
			gone++;
		} else
			i++;
	}
	return gone;
}
