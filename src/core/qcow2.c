/*
 * qcow2.c - the qcow2 metadata parser of qcow2.h.  Field offsets follow
 * QEMU's docs/interop/qcow2.txt; all integers in the image are big-endian.
 */
#include "qcow2.h"

#include <stdio.h>
#include <string.h>

#define QCOW2_MAGIC		0x514649fbu	/* "QFI\xfb" */
#define EXT_END			0x00000000u
#define EXT_BACKING_FORMAT	0xe2792acau
#define EXT_FEATURE_TABLE	0x6803f857u
#define EXT_BITMAPS		0x23852875u
#define EXT_ENCRYPTION		0x0537be77u
#define EXT_DATA_FILE		0x44415441u

/* What a plain image may have: everything else is refused. */
#define INCOMPAT_KNOWN	(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_COMPRESSION | \
			 QCOW2_INCOMPAT_EXTL2)
#define AUTOCLEAR_KNOWN	QCOW2_AUTOCLEAR_BITMAPS

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Copy a counted, unterminated string, cutting it to fit; NULs become '?'. */
static void
copy_name(char *dst, size_t dstlen, const uint8_t *src, size_t n)
{
	if (n > dstlen - 1)
		n = dstlen - 1;
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i] ? (char)src[i] : '?';
	dst[n] = '\0';
}

static int
fail(char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "%s", why);
	return -1;
}

int
qcow2_parse_header(const uint8_t *buf, size_t len, struct qcow2_header *h,
    char *err, size_t errlen)
{
	uint64_t boff;
	uint32_t blen, hlen;
	size_t off;

	memset(h, 0, sizeof(*h));
	if (len < 72 || be32(buf) != QCOW2_MAGIC)
		return fail(err, errlen, "not a qcow2 image");
	h->version = (int)be32(buf + 4);
	if (h->version != 2 && h->version != 3)
		return fail(err, errlen, "unsupported qcow2 version");
	boff = be64(buf + 8);
	blen = be32(buf + 16);
	h->size = be64(buf + 24);
	h->crypt_method = be32(buf + 32);
	h->nb_snapshots = be32(buf + 60);
	h->snapshots_offset = be64(buf + 64);
	h->cluster_bits = (int)be32(buf + 20);
	h->l1_size = be32(buf + 36);
	h->l1_table_offset = be64(buf + 40);
	if (h->cluster_bits < 9 || h->cluster_bits > 21)
		return fail(err, errlen, "bad cluster size");
	if (blen >= sizeof(h->backing))
		return fail(err, errlen, "backing file name too long");
	if (blen > 0) {
		if (boff > len || blen > len - boff)
			return fail(err, errlen, "backing file name out of "
			    "range");
		copy_name(h->backing, sizeof(h->backing), buf + boff, blen);
	}
	if (h->version == 2)
		return 0;
	if (len < 104)
		return fail(err, errlen, "qcow2 v3 header cut short");
	h->incompatible = be64(buf + 72);
	h->compatible = be64(buf + 80);
	h->autoclear = be64(buf + 88);
	hlen = be32(buf + 100);
	if (hlen < 104 || hlen > len)
		return fail(err, errlen, "bad qcow2 header length");
	/* Header extensions: type, length, data padded to 8 bytes. */
	for (off = hlen; ; ) {
		uint32_t type, elen;
		if (off > len || len - off < 8)
			return fail(err, errlen, "header extensions cut short");
		type = be32(buf + off);
		elen = be32(buf + off + 4);
		off += 8;
		if (type == EXT_END)
			break;
		if (elen > len - off)
			return fail(err, errlen, "header extension out of range");
		if (type == EXT_BACKING_FORMAT)
			copy_name(h->backing_format, sizeof(h->backing_format),
			    buf + off, elen);
		else if (type == EXT_BITMAPS) {
			if (elen < 24)
				return fail(err, errlen, "bad bitmaps extension");
			h->nb_bitmaps = be32(buf + off);
			h->bitmap_dir_size = be64(buf + off + 8);
			h->bitmap_dir_offset = be64(buf + off + 16);
		} else if (type == EXT_DATA_FILE)
			copy_name(h->data_file, sizeof(h->data_file), buf + off,
			    elen);
		else if (type == EXT_ENCRYPTION)
			h->encryption_ext = 1;
		else if (type != EXT_FEATURE_TABLE && h->unknown_ext == 0)
			h->unknown_ext = type;
		off += ((size_t)elen + 7) & ~(size_t)7;
	}
	return 0;
}

int
qcow2_plain(const struct qcow2_header *h, char *err, size_t errlen)
{
	if (h->crypt_method != 0 || h->encryption_ext)
		return fail(err, errlen, "the image is encrypted, and vmgr has "
		    "no key to give QEMU; decrypt it first (qemu-img convert)");
	if ((h->incompatible & QCOW2_INCOMPAT_DATA_FILE) || h->data_file[0] ||
	    (h->autoclear & QCOW2_AUTOCLEAR_DATA_RAW)) {
		snprintf(err, errlen, "the image keeps its data in another file "
		    "(an external data file%s%.200s%s), which could be any file "
		    "of the host; convert it into one file first (qemu-img "
		    "convert)", h->data_file[0] ? ": \"" : "", h->data_file,
		    h->data_file[0] ? "\"" : "");
		return -1;
	}
	if (h->incompatible & QCOW2_INCOMPAT_CORRUPT)
		return fail(err, errlen, "the image is marked corrupt; repair it "
		    "first (qemu-img check -r all)");
	if (h->incompatible & ~INCOMPAT_KNOWN) {
		snprintf(err, errlen, "the image uses incompatible features vmgr "
		    "does not know (bits %#llx)", (unsigned long long)
		    (h->incompatible & ~INCOMPAT_KNOWN));
		return -1;
	}
	if (h->autoclear & ~AUTOCLEAR_KNOWN) {
		snprintf(err, errlen, "the image has autoclear features vmgr "
		    "does not know (bits %#llx)", (unsigned long long)
		    (h->autoclear & ~AUTOCLEAR_KNOWN));
		return -1;
	}
	if (h->unknown_ext) {
		snprintf(err, errlen, "the image has a header extension vmgr does "
		    "not know (type %#010x)", (unsigned)h->unknown_ext);
		return -1;
	}
	return 0;
}

int
qcow2_parse_snapshots(const uint8_t *buf, size_t len, uint32_t n,
    struct qcow2_snapshot *out, int max)
{
	size_t off = 0;
	int filled = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint16_t idlen, namelen;
		uint32_t extra;
		struct qcow2_snapshot s;

		if (len - off < 40)
			return -1;
		const uint8_t *e = buf + off;
		idlen = be16(e + 12);
		namelen = be16(e + 14);
		memset(&s, 0, sizeof(s));
		s.date_sec = be32(e + 16);
		s.vm_clock_ns = be64(e + 24);
		s.vm_state_size = be32(e + 32);
		extra = be32(e + 36);
		off += 40;
		if (extra > len - off)
			return -1;
		/* Extra data, when present, starts with the 64-bit size. */
		if (extra >= 8 && be64(buf + off) > s.vm_state_size)
			s.vm_state_size = be64(buf + off);
		off += extra;
		if ((size_t)idlen + namelen > len - off)
			return -1;
		copy_name(s.id, sizeof(s.id), buf + off, idlen);
		copy_name(s.name, sizeof(s.name), buf + off + idlen, namelen);
		off += (size_t)idlen + namelen;
		off = (off + 7) & ~(size_t)7;
		if (off > len)
			off = len;
		if (filled < max)
			out[filled++] = s;
	}
	return filled;
}

int
qcow2_parse_bitmaps(const uint8_t *buf, size_t len, uint32_t n,
    struct qcow2_bitmap *out, int max)
{
	size_t off = 0;
	int filled = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint16_t namelen;
		uint32_t extra;
		struct qcow2_bitmap b;

		if (len - off < 24)
			return -1;
		const uint8_t *e = buf + off;
		memset(&b, 0, sizeof(b));
		b.flags = be32(e + 12);
		b.granularity_bits = e[17];
		namelen = be16(e + 18);
		extra = be32(e + 20);
		off += 24;
		if (extra > len - off || namelen > len - off - extra)
			return -1;
		off += extra;
		copy_name(b.name, sizeof(b.name), buf + off, namelen);
		off += namelen;
		off = (off + 7) & ~(size_t)7;
		if (off > len)
			off = len;
		if (filled < max)
			out[filled++] = b;
	}
	return filled;
}

int
qcow2_entry(const struct qcow2_header *h, uint64_t entry, int l2,
    uint64_t *off)
{
	const uint64_t mask = 0x00fffffffffffe00ull;
	uint64_t csize = 1ull << h->cluster_bits;

	if (l2 && (entry & (1ull << 62)))
		return -1;		/* compressed */
	*off = entry & mask;
	if (*off == 0 || (l2 && (entry & 1)))
		return 1;
	return *off % csize == 0 ? 0 : -1;
}
