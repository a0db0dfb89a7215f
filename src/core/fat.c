/*
 * fat.c - a FAT12 image in memory: boot sector, two FATs, a root directory
 * of 64 entries, then each file's clusters one after another.
 */
#include "fat.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTOR		512
#define SPC		4			/* sectors per cluster */
#define CLUSTER		(SECTOR * SPC)
#define ROOT_ENTRIES	64
#define ROOT_SECTORS	(ROOT_ENTRIES * 32 / SECTOR)
#define FAT12_MAX	4084			/* clusters */
#define DOS_DATE	((2024 - 1980) << 9 | 1 << 5 | 1)	/* 2024-01-01 */

static void
put16(uint8_t *p, unsigned v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
}

static void
put32(uint8_t *p, uint32_t v)
{
	put16(p, v & 0xffff);
	put16(p + 2, v >> 16);
}

/* FAT12: entry n holds 12 bits, two entries in three bytes. */
static void
fat_set(uint8_t *fat, unsigned n, unsigned v)
{
	uint8_t *p = fat + n * 3 / 2;

	if (n & 1) {
		p[0] = (p[0] & 0x0f) | (v << 4 & 0xf0);
		p[1] = v >> 4 & 0xff;
	} else {
		p[0] = v & 0xff;
		p[1] = (p[1] & 0xf0) | (v >> 8 & 0x0f);
	}
}

static uint8_t
lfn_checksum(const uint8_t *shortname)
{
	uint8_t sum = 0;

	for (int i = 0; i < 11; i++)
		sum = (uint8_t)(((sum & 1) << 7) + (sum >> 1) + shortname[i]);
	return sum;
}

/* "FILE~N" and no extension: an alias no long name here can clash with. */
static void
short_name(const char *name, int n, uint8_t *out)
{
	char base[9];
	int o = 0;

	memset(out, ' ', 11);
	for (const char *p = name; *p && o < 6; p++)
		if (isalnum((unsigned char)*p))
			base[o++] = (char)toupper((unsigned char)*p);
	if (o == 0)
		base[o++] = 'F';
	base[o] = '\0';
	char tail[16];
	snprintf(tail, sizeof(tail), "~%u", (unsigned)n % 10);
	memcpy(out, base, (size_t)o);
	memcpy(out + o, tail, strlen(tail));
}

/* The long name's entries, last part first, then the 8.3 entry. */
static uint8_t *
dir_entry(uint8_t *d, const char *name, const uint8_t *shortname,
    unsigned cluster, size_t size)
{
	static const int pos[13] = { 1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24,
	    28, 30 };
	size_t len = strlen(name);
	int parts = (int)((len + 12) / 13);
	uint8_t sum = lfn_checksum(shortname);

	for (int part = parts; part >= 1; part--, d += 32) {
		memset(d, 0, 32);
		d[0] = (uint8_t)(part | (part == parts ? 0x40 : 0));
		d[11] = 0x0f;
		d[13] = sum;
		for (int k = 0; k < 13; k++) {
			size_t i = (size_t)(part - 1) * 13 + (size_t)k;
			unsigned ch = i < len ? (unsigned char)name[i] :
			    i == len ? 0 : 0xffff;
			put16(d + pos[k], ch);
		}
	}
	memset(d, 0, 32);
	memcpy(d, shortname, 11);
	d[11] = 0x20;		/* archive */
	put16(d + 16, DOS_DATE);
	put16(d + 18, DOS_DATE);
	put16(d + 24, DOS_DATE);
	put16(d + 26, cluster);
	put32(d + 28, (uint32_t)size);
	return d + 32;
}

int
fat_image(const struct fat_file *files, int nfiles, const char *label,
    uint8_t **img, size_t *len)
{
	unsigned clusters = 0, spf, total, data_start, next = 2;
	size_t bytes = 0, entries = 1;
	uint8_t *b, *fat, *root, *d;

	if (nfiles < 0 || nfiles > FAT_MAX_FILES || strlen(label) > 11)
		return -1;
	for (int i = 0; i < nfiles; i++) {
		size_t n = strlen(files[i].name);
		if (n == 0 || n > 64 || files[i].len > FAT_MAX_BYTES)
			return -1;
		for (size_t k = 0; k < n; k++)
			if (files[i].name[k] < 0x21 || files[i].name[k] > 0x7e ||
			    strchr("\"*/:<>?\\|", files[i].name[k]))
				return -1;
		bytes += files[i].len;
		clusters += (unsigned)((files[i].len + CLUSTER - 1) / CLUSTER);
		entries += (n + 12) / 13 + 1;
	}
	if (bytes > FAT_MAX_BYTES || entries > ROOT_ENTRIES)
		return -1;
	/* A little room, so that the smallest seed is still FAT12-shaped. */
	clusters += 16;
	if (clusters > FAT12_MAX)
		return -1;
	spf = ((clusters + 2) * 3 / 2 + SECTOR - 1) / SECTOR;
	data_start = 1 + 2 * spf + ROOT_SECTORS;
	total = data_start + clusters * SPC;
	if ((b = calloc(total, SECTOR)) == NULL)
		return -1;

	/* The boot sector: a FAT12 BIOS parameter block. */
	memcpy(b, "\xeb\x3c\x90" "VMGR    ", 11);
	put16(b + 11, SECTOR);
	b[13] = SPC;
	put16(b + 14, 1);		/* reserved sectors */
	b[16] = 2;			/* FATs */
	put16(b + 17, ROOT_ENTRIES);
	put16(b + 19, total);
	b[21] = 0xf8;			/* media: fixed disk */
	put16(b + 22, spf);
	put16(b + 24, 32);		/* sectors per track */
	put16(b + 26, 64);		/* heads */
	b[36] = 0x80;			/* drive */
	b[38] = 0x29;			/* extended boot signature */
	put32(b + 39, 0x564d4752);	/* volume id "VMGR" */
	memset(b + 43, ' ', 11);
	memcpy(b + 43, label, strlen(label));
	memcpy(b + 54, "FAT12   ", 8);
	b[510] = 0x55;
	b[511] = 0xaa;

	fat = b + SECTOR;
	fat_set(fat, 0, 0xff8);
	fat_set(fat, 1, 0xfff);
	root = b + (1 + 2 * spf) * SECTOR;
	memset(root, ' ', 11);		/* the label, as blkid reads it */
	memcpy(root, label, strlen(label));
	root[11] = 0x08;
	d = root + 32;
	for (int i = 0; i < nfiles; i++) {
		unsigned n = (unsigned)((files[i].len + CLUSTER - 1) / CLUSTER);
		uint8_t sn[11];
		short_name(files[i].name, i + 1, sn);
		d = dir_entry(d, files[i].name, sn, n ? next : 0, files[i].len);
		if (n)
			memcpy(b + (size_t)(data_start + (next - 2) * SPC) *
			    SECTOR, files[i].data, files[i].len);
		for (unsigned k = 0; k < n; k++, next++)
			fat_set(fat, next, k + 1 == n ? 0xfff : next + 1);
	}
	memcpy(fat + spf * SECTOR, fat, spf * SECTOR);	/* the second FAT */
	*img = b;
	*len = (size_t)total * SECTOR;
	return 0;
}
