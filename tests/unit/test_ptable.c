/*
 * test_ptable.c - partition tables (src/core/ptable.c) and the FAT of the
 * cloud-init seed (src/core/fat.c).  The tables are built here byte by
 * byte as sfdisk writes them; the FAT image is read back with its own
 * structure and, where mtools is installed, by mtools, an implementation
 * that is not ours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fat.h"
#include "core/ptable.h"

static const uint8_t esp_guid[16] = {
	0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11,
	0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b };
static const uint8_t bios_guid[16] = {
	0x48, 0x61, 0x68, 0x21, 0x49, 0x64, 0x6f, 0x6e,
	0x74, 0x4e, 0x65, 0x65, 0x64, 0x45, 0x46, 0x49 };
static const uint8_t linux_guid[16] = {
	0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
	0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4 };

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A protective MBR and a GPT header with entries at LBA 2. */
static uint8_t *
gpt(int code, const uint8_t *const *types, int n)
{
	uint8_t *b = calloc(1, PTABLE_BYTES);

	assert_non_null(b);
	if (code)
		b[0] = 0xeb, b[1] = 0x63;
	b[446 + 4] = 0xee;
	b[510] = 0x55, b[511] = 0xaa;
	memcpy(b + 512, "EFI PART", 8);
	b[512 + 72] = 2;			/* entries at LBA 2 */
	put32(b + 512 + 80, 128);		/* 128 entries */
	put32(b + 512 + 84, 128);		/* of 128 bytes */
	for (int i = 0; i < n; i++)
		memcpy(b + 1024 + 128 * i, types[i], 16);
	return b;
}

static void
test_none(void **state)
{
	uint8_t *b = calloc(1, PTABLE_BYTES);
	char what[160];

	(void)state;
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)), 0);
	assert_string_equal(what, "no partition table");
	assert_string_equal(ptable_firmware_name(0), "none");
	b[510] = 0x55, b[511] = 0xaa;	/* a signature, no partitions */
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)), 0);
	assert_non_null(strstr(what, "without partitions"));
	assert_int_equal(ptable_firmware(b, 100, what, sizeof(what)), 0);
	free(b);
}

static void
test_mbr(void **state)
{
	uint8_t *b = calloc(1, PTABLE_BYTES);
	char what[160];

	(void)state;
	b[510] = 0x55, b[511] = 0xaa;
	b[446 + 4] = 0x83;
	/* A partition, no boot code: nothing can boot it. */
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)), 0);
	b[0] = 0xfa;
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)),
	    PTABLE_BIOS);
	assert_string_equal(what, "MBR: boot code, 1 partition");
	b[462 + 4] = 0xef;		/* an ESP on MBR */
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)),
	    PTABLE_BIOS | PTABLE_UEFI);
	assert_string_equal(ptable_firmware_name(PTABLE_BIOS | PTABLE_UEFI),
	    "any");
	free(b);
}

static void
test_gpt(void **state)
{
	const uint8_t *all[] = { bios_guid, esp_guid, linux_guid };
	const uint8_t *esp[] = { esp_guid, linux_guid };
	const uint8_t *lin[] = { linux_guid };
	char what[160];
	uint8_t *b;

	(void)state;
	b = gpt(1, all, 3);
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)),
	    PTABLE_BIOS | PTABLE_UEFI);
	assert_string_equal(what, "GPT: BIOS boot partition, EFI system "
	    "partition, 3 partitions");
	/* Entries past what was read are not looked at, nor read. */
	assert_int_equal(ptable_firmware(b, 1024 + 64, what, sizeof(what)),
	    PTABLE_BIOS);
	assert_string_equal(what, "GPT: MBR boot code, 0 partitions");
	free(b);
	b = gpt(0, esp, 2);
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)),
	    PTABLE_UEFI);
	assert_string_equal(ptable_firmware_name(PTABLE_UEFI), "uefi");
	free(b);
	b = gpt(0, all, 3);	/* GRUB's partition, but no code to load it */
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)),
	    PTABLE_UEFI);
	assert_non_null(strstr(what, "no MBR boot code"));
	free(b);
	b = gpt(0, lin, 1);
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)), 0);
	free(b);
	/* A bad header: a huge entry size, entries outside the buffer. */
	b = gpt(1, all, 3);
	put32(b + 512 + 84, 1u << 30);
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)), 0);
	assert_non_null(strstr(what, "bad entry table"));
	put32(b + 512 + 84, 128);
	b[512 + 72] = 200;
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)), 0);
	memset(b + 512, 0, 8);
	assert_int_equal(ptable_firmware(b, PTABLE_BYTES, what, sizeof(what)), 0);
	assert_non_null(strstr(what, "without a GPT header"));
	free(b);
}

static void
test_fat(void **state)
{
	static char big[70000];
	struct fat_file f[] = {
		{ "meta-data", "instance-id: iid-1\n", 19 },
		{ "user-data", "#cloud-config\n", 14 },
		{ "network-config", big, sizeof(big) },
	};
	uint8_t *img;
	size_t len;

	(void)state;
	memset(big, 'x', sizeof(big));
	assert_int_equal(fat_image(f, 3, "cidata", &img, &len), 0);
	assert_int_equal(len % 512, 0);
	assert_int_equal(img[510], 0x55);
	assert_int_equal(img[511], 0xaa);
	assert_memory_equal(img + 43, "cidata     ", 11);
	assert_memory_equal(img + 54, "FAT12   ", 8);
	/* mtools reads what we wrote, long names and all. */
	char path[] = "/tmp/vmgr-fat-XXXXXX", cmd[256];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, img, len), (ssize_t)len);
	close(fd);
	if (system("command -v mtype >/dev/null 2>&1") == 0) {
		snprintf(cmd, sizeof(cmd), "MTOOLS_SKIP_CHECK=1 mtype -i %s "
		    "::network-config | wc -c | grep -qx 70000", path);
		assert_int_equal(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "MTOOLS_SKIP_CHECK=1 mtype -i %s "
		    "::meta-data | grep -qx 'instance-id: iid-1'", path);
		assert_int_equal(system(cmd), 0);
	}
	if (system("command -v fsck.vfat >/dev/null 2>&1") == 0) {
		snprintf(cmd, sizeof(cmd), "fsck.vfat -n %s >/dev/null", path);
		assert_int_equal(system(cmd), 0);
	}
	unlink(path);
	free(img);
	/* Refused: a name with a slash, too many files, too much. */
	struct fat_file bad = { "a/b", "x", 1 };
	assert_int_equal(fat_image(&bad, 1, "cidata", &img, &len), -1);
	assert_int_equal(fat_image(f, FAT_MAX_FILES + 1, "cidata", &img, &len),
	    -1);
	struct fat_file huge = { "h", big, FAT_MAX_BYTES + 1 };
	assert_int_equal(fat_image(&huge, 1, "cidata", &img, &len), -1);
	assert_int_equal(fat_image(f, 1, "a-label-too-long", &img, &len), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_mbr),
		cmocka_unit_test(test_gpt),
		cmocka_unit_test(test_fat),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
