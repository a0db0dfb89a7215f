/*
 * ptable.c - the partition table of a disk image: MBR or GPT, and what it
 * says about the firmware that can boot the disk.
 */
#include "ptable.h"

#include <stdio.h>
#include <string.h>

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* The type GUIDs as they lie on disk (the first three fields little-endian). */
static const uint8_t guid_esp[16] = {
	0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11,
	0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b };
static const uint8_t guid_bios_boot[16] = {
	0x48, 0x61, 0x68, 0x21, 0x49, 0x64, 0x6f, 0x6e,
	0x74, 0x4e, 0x65, 0x65, 0x64, 0x45, 0x46, 0x49 };
static const uint8_t guid_zero[16];

/* Boot code: anything but zeros in the MBR's first 440 bytes. */
static int
has_boot_code(const uint8_t *mbr)
{
	for (int i = 0; i < 440; i++)
		if (mbr[i])
			return 1;
	return 0;
}

static void
append(char *what, size_t len, const char *s)
{
	size_t n = strlen(what);

	if (n < len)
		snprintf(what + n, len - n, "%s%s", n ? ", " : "", s);
}

/* "KIND: ITEM, EFI system partition, N partitions" into what. */
static void
describe(char *what, size_t len, const char *kind, const char *item, int esp,
    int parts)
{
	char list[160] = "", count[32];

	if (item)
		append(list, sizeof(list), item);
	if (esp)
		append(list, sizeof(list), "EFI system partition");
	snprintf(count, sizeof(count), "%d partition%s", parts,
	    parts == 1 ? "" : "s");
	append(list, sizeof(list), count);
	snprintf(what, len, "%s: %s", kind, list);
}

static int
gpt(const uint8_t *buf, size_t len, int code, char *what, size_t whatlen)
{
	const uint8_t *h = buf + 512;
	uint64_t lba;
	uint32_t n, size;
	int parts = 0, esp = 0, bios = 0;

	if (len < 1024 || memcmp(h, "EFI PART", 8) != 0) {
		snprintf(what, whatlen, "a protective MBR without a GPT header");
		return 0;
	}
	lba = le64(h + 72);
	n = le32(h + 80);
	size = le32(h + 84);
	if (size < 128 || size > 4096 || (size & (size - 1)) || n > 1024 ||
	    lba < 2 || lba > len / 512) {
		snprintf(what, whatlen, "a GPT header with a bad entry table");
		return 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = lba * 512 + (uint64_t)i * size;
		if (off + size > len)
			break;	/* entries beyond what was read are not seen */
		const uint8_t *e = buf + off;
		if (memcmp(e, guid_zero, 16) == 0)
			continue;
		parts++;
		if (memcmp(e, guid_esp, 16) == 0)
			esp = 1;
		else if (memcmp(e, guid_bios_boot, 16) == 0)
			bios = 1;
	}
	/* GRUB's BIOS core sits in its partition; the MBR code loads it. */
	describe(what, whatlen, "GPT", bios ? (code ? "BIOS boot partition" :
	    "BIOS boot partition (no MBR boot code)") : code ? "MBR boot code" :
	    NULL, esp, parts);
	return (code ? PTABLE_BIOS : 0) | (esp ? PTABLE_UEFI : 0);
}

int
ptable_firmware(const uint8_t *buf, size_t len, char *what, size_t whatlen)
{
	int code, parts = 0, esp = 0, gpt_part = 0;

	if (len < 512 || buf[510] != 0x55 || buf[511] != 0xaa) {
		snprintf(what, whatlen, "no partition table");
		return 0;
	}
	code = has_boot_code(buf);
	for (int i = 0; i < 4; i++) {
		const uint8_t *p = buf + 446 + 16 * i;
		if (p[4] == 0)
			continue;
		parts++;
		if (p[4] == 0xee)
			gpt_part = 1;
		else if (p[4] == 0xef)
			esp = 1;
	}
	if (gpt_part)
		return gpt(buf, len, code, what, whatlen);
	if (parts == 0) {
		snprintf(what, whatlen, "an MBR without partitions");
		return 0;
	}
	describe(what, whatlen, "MBR", code ? "boot code" : NULL, esp, parts);
	return (code ? PTABLE_BIOS : 0) | (esp ? PTABLE_UEFI : 0);
}

const char *
ptable_firmware_name(int fw)
{
	switch (fw & (PTABLE_BIOS | PTABLE_UEFI)) {
	case PTABLE_BIOS: return "bios";
	case PTABLE_UEFI: return "uefi";
	case PTABLE_BIOS | PTABLE_UEFI: return "any";
	default: return "none";
	}
}
