/*
 * img.c - images as qemu-img and QEMU will meet them.  vmgrd reads a
 * qcow2 file's header itself (core/qcow2.c does the parsing) and, before
 * root's qemu-img opens a file whose contents someone less trusted wrote
 * (an imported image, a volume a VM's QEMU wrote, a backup its QEMU or
 * storage daemon wrote), checks that it is plain: not encrypted, no
 * external data file, nothing vmgr does not know, and exactly the backing
 * file expected.  Then qemu-img gets a json: description that names every
 * file of the chain and ends it with "backing": null, so it opens those
 * files and no other.  Called by volume.c, snapshot.c and backup.c.
 */
#include "daemon.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/util.h"

int
qcow2_read_info(const char *path, struct qcow2_header *h,
    struct qcow2_snapshot *snaps, int maxsnaps, int *nsnaps,
    struct qcow2_bitmap *bitmaps, int maxbitmaps, int *nbitmaps,
    char *err, size_t errlen)
{
	static uint8_t buf[65536];
	uint8_t *table = NULL;
	ssize_t n;
	int fd, rc = -1;

	if (nsnaps)
		*nsnaps = 0;
	if (nbitmaps)
		*nbitmaps = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((n = pread(fd, buf, sizeof(buf), 0)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (qcow2_parse_header(buf, (size_t)n, h, err, errlen) < 0)
		goto out;
	/* Each table is read whole, up to a bound no sane image reaches. */
	if (snaps && h->nb_snapshots > 0) {
		size_t len = QCOW2_TABLE_MAX;
		if ((table = malloc(len)) == NULL ||
		    (n = pread(fd, table, len, (off_t)h->snapshots_offset)) < 0 ||
		    (*nsnaps = qcow2_parse_snapshots(table, (size_t)n,
		    h->nb_snapshots, snaps, maxsnaps)) < 0) {
			snprintf(err, errlen, "%s: unreadable snapshot table",
			    path);
			*nsnaps = 0;
			goto out;
		}
		free(table);
		table = NULL;
	}
	if (bitmaps && h->nb_bitmaps > 0) {
		size_t len = h->bitmap_dir_size < QCOW2_TABLE_MAX ?
		    (size_t)h->bitmap_dir_size : QCOW2_TABLE_MAX;
		if ((table = malloc(len ? len : 1)) == NULL ||
		    (n = pread(fd, table, len, (off_t)h->bitmap_dir_offset)) < 0 ||
		    (*nbitmaps = qcow2_parse_bitmaps(table, (size_t)n,
		    h->nb_bitmaps, bitmaps, maxbitmaps)) < 0) {
			snprintf(err, errlen, "%s: unreadable bitmap directory",
			    path);
			*nbitmaps = 0;
			goto out;
		}
	}
	rc = 0;
out:
	free(table);
	close(fd);
	return rc;
}

int
img_check(const char *path, const char *backing, char *err, size_t errlen)
{
	struct qcow2_header h;
	char why[400];

	if (qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, why,
	    sizeof(why)) < 0 || qcow2_plain(&h, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%.300s: %s", path, why);
		return -1;
	}
	/* "": any backing name; the caller pins the chain itself. */
	if ((backing == NULL || backing[0]) && strcmp(h.backing, backing ?
	    backing : "") != 0) {
		if (h.backing[0])
			snprintf(err, errlen, "%.300s has the backing file \"%.200s\""
			    "%s%.200s%s", path, h.backing, backing ? " where vmgr "
			    "expects \"" : "", backing ? backing : "", backing ?
			    "\"" : "");
		else
			snprintf(err, errlen, "%.300s has no backing file where "
			    "vmgr expects \"%.200s\"", path, backing);
		return -1;
	}
	if (h.backing[0] && h.backing_format[0] &&
	    strcmp(h.backing_format, "qcow2") != 0) {
		snprintf(err, errlen, "%.300s: its backing file's format is "
		    "\"%.20s\", not qcow2", path, h.backing_format);
		return -1;
	}
	return 0;
}

char *
img_json(const char *driver, const char *const *chain)
{
	json_t *node = NULL;
	char *text, *out = NULL;
	size_t n = 0;

	while (chain[n])
		n++;
	/* From the base up: each node has the one below it as its backing. */
	for (size_t i = n; i-- > 0; ) {
		const char *drv = i == 0 ? driver : "qcow2";
		json_t *o = json_pack("{s:s, s:{s:s, s:s}}", "driver", drv,
		    "file", "driver", "file", "filename", chain[i]);
		if (o == NULL) {
			json_decref(node);
			return NULL;
		}
		if (strcmp(drv, "qcow2") == 0)
			json_object_set_new(o, "backing", node ? node :
			    json_null());
		else
			json_decref(node);	/* a raw image has no backing */
		node = o;
	}
	if (node && (text = json_dumps(node, JSON_COMPACT)) != NULL) {
		if (asprintf(&out, "json:%s", text) < 0)
			out = NULL;
		free(text);
	}
	json_decref(node);
	return out;
}

/* Read the guest's bytes [0, len) of a qcow2 file without a backing file. */
static int
qcow2_read_start(int fd, const struct qcow2_header *h, uint8_t *buf,
    size_t len, char *err, size_t errlen)
{
	uint64_t csize = 1ull << h->cluster_bits, per_l2 = csize / 8;

	if (h->incompatible & QCOW2_INCOMPAT_EXTL2)
		return snprintf(err, errlen, "extended L2 entries"), -1;
	for (size_t done = 0; done < len; ) {
		uint64_t idx = done / csize, within = done % csize, e, off;
		size_t n = len - done < csize - within ? len - done :
		    (size_t)(csize - within);
		uint8_t be[8];
		int rc;

		memset(buf + done, 0, n);
		if (idx / per_l2 >= h->l1_size)
			return snprintf(err, errlen, "the L1 table is too "
			    "short"), -1;
		if (pread(fd, be, 8, (off_t)(h->l1_table_offset + 8 * (idx /
		    per_l2))) != 8)
			return snprintf(err, errlen, "cannot read the L1 "
			    "table"), -1;
		e = be64toh(*(uint64_t *)(void *)be);
		if ((rc = qcow2_entry(h, e, 0, &off)) < 0)
			return snprintf(err, errlen, "a bad L1 entry"), -1;
		if (rc == 0) {
			if (pread(fd, be, 8, (off_t)(off + 8 * (idx %
			    per_l2))) != 8)
				return snprintf(err, errlen, "cannot read an "
				    "L2 table"), -1;
			e = be64toh(*(uint64_t *)(void *)be);
			if ((rc = qcow2_entry(h, e, 1, &off)) < 0)
				return snprintf(err, errlen, "a compressed or "
				    "bad cluster"), -1;
			if (rc == 0 && pread(fd, buf + done, n, (off_t)(off +
			    within)) < 0)
				return snprintf(err, errlen, "%s",
				    strerror(errno)), -1;
		}
		done += n;
	}
	return 0;
}

int
img_read_start(const char *path, uint8_t *buf, size_t len, char *err,
    size_t errlen)
{
	static uint8_t head[65536];
	struct qcow2_header h;
	ssize_t n;
	int fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return snprintf(err, errlen, "%s: %s", path, strerror(errno)),
		    -1;
	if ((n = pread(fd, head, sizeof(head), 0)) < 0)
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	else if (qcow2_parse_header(head, (size_t)n, &h, err, errlen) == 0) {
		if (h.backing[0])
			snprintf(err, errlen, "%s has a backing file", path);
		else
			rc = qcow2_read_start(fd, &h, buf, len, err, errlen);
	}
	close(fd);
	return rc;
}
