/*
 * qcow2.h - reads what vmgr needs from a qcow2 image's metadata: the
 * virtual size, the backing file, the internal snapshots and the persistent
 * dirty bitmaps.  Pure: it parses byte buffers that the caller has read,
 * so it is unit-tested on crafted images and fuzzed; every offset and
 * length in the image is checked against the buffer before it is used.
 */
#ifndef VMGR_QCOW2_H
#define VMGR_QCOW2_H

#include <stddef.h>
#include <stdint.h>

#define QCOW2_NAME_MAX		127	/* longer names are cut */
#define QCOW2_TABLE_MAX		(1u << 20) /* snapshot table, bitmap dir */

/* Feature bits and header extensions of QEMU's docs/interop/qcow2.txt. */
#define QCOW2_INCOMPAT_DIRTY		(1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT		(1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE	(1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION	(1ull << 3)
#define QCOW2_INCOMPAT_EXTL2		(1ull << 4)
#define QCOW2_AUTOCLEAR_BITMAPS		(1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW	(1ull << 1)

struct qcow2_header {
	int		version;	/* 2 or 3 */
	uint64_t	size;		/* virtual size in bytes */
	char		backing[1024];	/* "" when none */
	char		backing_format[32];
	uint32_t	crypt_method;	/* 0: not encrypted */
	uint64_t	incompatible;	/* QCOW2_INCOMPAT_* (v3) */
	uint64_t	compatible;
	uint64_t	autoclear;
	char		data_file[256];	/* the external data file named, or "" */
	int		encryption_ext;	/* a full disk encryption header */
	uint32_t	unknown_ext;	/* the first extension not known, or 0 */
	uint32_t	nb_snapshots;
	uint64_t	snapshots_offset;
	uint32_t	nb_bitmaps;
	uint64_t	bitmap_dir_offset;
	uint64_t	bitmap_dir_size;
	int		cluster_bits;	/* 9 to 21 */
	uint32_t	l1_size;	/* entries */
	uint64_t	l1_table_offset;
};

struct qcow2_snapshot {
	char		id[32];
	char		name[QCOW2_NAME_MAX + 1];
	uint64_t	vm_state_size;	/* 0 = disk only */
	uint64_t	date_sec;
	uint64_t	vm_clock_ns;
};

#define QCOW2_BITMAP_IN_USE	0x1	/* not stored cleanly: inconsistent */

struct qcow2_bitmap {
	char		name[QCOW2_NAME_MAX + 1];
	uint32_t	flags;
	int		granularity_bits;
};

/*
 * Parse the header at the start of buf (the file's first len bytes; 64 KiB
 * covers any header with its extensions).  0, or -1 with a reason in err
 * when buf is not a qcow2 image vmgr can read.
 */
int	qcow2_parse_header(const uint8_t *buf, size_t len,
	    struct qcow2_header *, char *err, size_t errlen);

/*
 * 0 when the image asks QEMU to open nothing but itself and the backing
 * file it names (checked by the caller): not encrypted, no external data
 * file, no feature bit or header extension that vmgr does not know (a
 * list of what is allowed, not of what is refused).  -1 with the reason.
 */
int	qcow2_plain(const struct qcow2_header *, char *err, size_t errlen);

/*
 * Parse n snapshot table entries from buf (the table, read from
 * snapshots_offset).  Fills at most max entries; returns how many were
 * filled, or -1 when the table is cut short or malformed.
 */
int	qcow2_parse_snapshots(const uint8_t *buf, size_t len, uint32_t n,
	    struct qcow2_snapshot *, int max);

/* The same for the bitmap directory (read from bitmap_dir_offset). */
int	qcow2_parse_bitmaps(const uint8_t *buf, size_t len, uint32_t n,
	    struct qcow2_bitmap *, int max);

/*
 * Where a guest cluster's data lies, from its L1 or L2 table entry (l2:
 * which of the two it is).  0 with *off the host offset (of the L2 table,
 * or of the data); 1 when it reads as zeros (unallocated, or the zero
 * flag); -1 for what vmgr does not read itself (compressed, or an offset
 * that is not cluster aligned).
 */
int	qcow2_entry(const struct qcow2_header *, uint64_t entry, int l2,
	    uint64_t *off);

#endif
