/*
 * ptable.h - what firmware can boot a disk, read from its partition table
 * (the first 34 sectors: the MBR, the GPT header and 128 entries).  An EFI
 * system partition means UEFI can boot it; a BIOS boot partition, or boot
 * code in the MBR, means SeaBIOS can.  Pure, like qcow2.h: it reads a
 * buffer the caller filled, checking every offset against it.
 */
#ifndef VMGR_PTABLE_H
#define VMGR_PTABLE_H

#include <stddef.h>
#include <stdint.h>

#define PTABLE_BYTES	(34 * 512)	/* MBR, GPT header, 128 entries */

#define PTABLE_BIOS	0x1
#define PTABLE_UEFI	0x2

/*
 * PTABLE_BIOS | PTABLE_UEFI, as the table shows; 0 when neither can boot
 * it.  what gets a short account ("GPT: BIOS boot partition, EFI system
 * partition, 3 partitions" or "no partition table").
 */
int	ptable_firmware(const uint8_t *buf, size_t len, char *what,
	    size_t whatlen);

/* "bios", "uefi", "any" (both), or "none". */
const char *ptable_firmware_name(int fw);

#endif
