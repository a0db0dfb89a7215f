/*
 * fat.h - a small FAT12 file system made in memory: the cloud-init seed
 * (label "cidata", the files meta-data, user-data, network-config) that
 * vmgrd hands QEMU as a read-only disk.  Long names (VFAT) are written
 * beside 8.3 aliases, as Linux's vfat and mtools read them.  Pure.
 */
#ifndef VMGR_FAT_H
#define VMGR_FAT_H

#include <stddef.h>
#include <stdint.h>

#define FAT_MAX_FILES	8
#define FAT_MAX_BYTES	(6u << 20)	/* all files together */

struct fat_file {
	const char	*name;		/* at most 64 ASCII characters */
	const void	*data;
	size_t		 len;
};

/*
 * A FAT12 image holding files in its root directory, labelled label (at
 * most 11 characters).  0 with *img (malloc'd) and *len, or -1 when the
 * files are too many, too large, or badly named, or memory is short.
 */
int	fat_image(const struct fat_file *files, int nfiles, const char *label,
	    uint8_t **img, size_t *len);

#endif
