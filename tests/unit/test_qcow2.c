/*
 * test_qcow2.c - the qcow2 metadata parser (src/core/qcow2.c): a real image
 * made by qemu-img (its non-zero bytes, below) must give its size, backing
 * file, snapshots and bitmaps; crafted damage must be refused; and every
 * truncation of it must be refused or parsed without reading past the end
 * (run under ASan with SANITIZE=1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qcow2.h"

/* t.qcow2: 1 MiB, backing b.qcow2 (qcow2), snapshots before-upgrade and second, bitmap vmgr-7; made by qemu-img 7.2 */
static const struct chunk { size_t off; size_t len; const char *hex; } real_image[] = {
	{ 0, 567, "514649fb000000030000000000000230000000070000001000000000001000000000000000000001000000000003000000000000000100000000000100000002000000000007000000000000000000000000000000000000000000000000000100000004000000700000000000000000e2792aca0000000571636f77320000006803f857000001800000646972747920626974000000000000000000000000000000000000000000000000000000000000000000000000000001636f7272757074206269740000000000000000000000000000000000000000000000000000000000000000000000000265787465726e616c20646174612066696c65000000000000000000000000000000000000000000000000000000000003636f6d7072657373696f6e20747970650000000000000000000000000000000000000000000000000000000000000004657874656e646564204c3220656e747269657300000000000000000000000000000000000000000000000000000001006c617a7920726566636f756e7473000000000000000000000000000000000000000000000000000000000000000002006269746d61707300000000000000000000000000000000000000000000000000000000000000000000000000000002017261772065787465726e616c2064617461000000000000000000000000000000000000000000000000000000000023852875000000180000000100000000000000000000002000000000000800000000000000000000622e71636f7732" },
	{ 65541, 1, "02" },
	{ 131073, 17, "0100010001000100010001000100010001" },
	{ 458757, 146, "040000000000010001000e6b07d10d3b6300c000000000000000000000000000000018000000000000000000000000001000000000000000000000316265666f72652d7570677261646500000000000006000000000001000100066b07d10e00235eb000000000000000000000000000000018000000000000000000000000001000000000000000000000327365636f6e64" },
	{ 524293, 25, "05000000000001000000020110000600000000766d67722d37" },
};

#define IMAGE_LEN	(512 * 1024 + 64)

static uint8_t *
build_image(void)
{
	uint8_t *img = calloc(1, IMAGE_LEN);

	assert_non_null(img);
	for (size_t i = 0; i < sizeof(real_image) / sizeof(real_image[0]); i++)
		for (size_t k = 0; k < real_image[i].len; k++) {
			unsigned v;
			sscanf(real_image[i].hex + 2 * k, "%2x", &v);
			img[real_image[i].off + k] = (uint8_t)v;
		}
	return img;
}

static void
test_real_image(void **state)
{
	uint8_t *img = build_image();
	struct qcow2_header h;
	struct qcow2_snapshot s[4];
	struct qcow2_bitmap b[4];
	char err[128];

	(void)state;
	assert_int_equal(qcow2_parse_header(img, 65536, &h, err, sizeof(err)),
	    0);
	assert_int_equal(h.version, 3);
	assert_int_equal(h.size, 1048576);
	assert_string_equal(h.backing, "b.qcow2");
	assert_string_equal(h.backing_format, "qcow2");
	assert_int_equal(h.nb_snapshots, 2);
	assert_int_equal(h.nb_bitmaps, 1);
	assert_true(h.snapshots_offset < IMAGE_LEN);
	assert_true(h.bitmap_dir_offset < IMAGE_LEN);

	size_t off = (size_t)h.snapshots_offset;
	assert_int_equal(qcow2_parse_snapshots(img + off, IMAGE_LEN - off, 2,
	    s, 4), 2);
	assert_string_equal(s[0].name, "before-upgrade");
	assert_string_equal(s[0].id, "1");
	assert_string_equal(s[1].name, "second");
	assert_int_equal(s[1].vm_state_size, 0);
	assert_true(s[1].date_sec >= s[0].date_sec && s[0].date_sec > 1.7e9);
	/* max is respected: the second entry is read but not stored */
	assert_int_equal(qcow2_parse_snapshots(img + off, IMAGE_LEN - off, 2,
	    s, 1), 1);

	off = (size_t)h.bitmap_dir_offset;
	assert_int_equal(qcow2_parse_bitmaps(img + off, (size_t)h.bitmap_dir_size,
	    1, b, 4), 1);
	assert_string_equal(b[0].name, "vmgr-7");
	assert_int_equal(b[0].granularity_bits, 16);
	assert_false(b[0].flags & QCOW2_BITMAP_IN_USE);
	free(img);
}

static void
test_damage(void **state)
{
	uint8_t *img = build_image();
	struct qcow2_header h;
	char err[128];

	(void)state;
	img[0] = 'X';
	assert_int_equal(qcow2_parse_header(img, 65536, &h, err, sizeof(err)),
	    -1);
	assert_string_equal(err, "not a qcow2 image");
	img[0] = 'Q';
	img[7] = 9;		/* version 9 */
	assert_int_equal(qcow2_parse_header(img, 65536, &h, err, sizeof(err)),
	    -1);
	img[7] = 3;
	img[8] = 0x7f;		/* backing name far past the buffer */
	assert_int_equal(qcow2_parse_header(img, 65536, &h, err, sizeof(err)),
	    -1);
	assert_string_equal(err, "backing file name out of range");
	img[8] = 0;
	img[100] = 0xff;	/* header length past the buffer */
	assert_int_equal(qcow2_parse_header(img, 65536, &h, err, sizeof(err)),
	    -1);
	free(img);
}

/* Every prefix of the header and of the tables: refused or parsed, no overread. */
static void
test_truncations(void **state)
{
	uint8_t *img = build_image();
	struct qcow2_header h, full;
	struct qcow2_snapshot s[4];
	struct qcow2_bitmap b[4];
	char err[128];

	(void)state;
	assert_int_equal(qcow2_parse_header(img, 65536, &full, err,
	    sizeof(err)), 0);
	for (size_t len = 0; len < 1024; len++) {
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, img, len);
		int rc = qcow2_parse_header(cut, len, &h, err, sizeof(err));
		if (len < 72)
			assert_int_equal(rc, -1);
		free(cut);
	}
	size_t off = (size_t)full.snapshots_offset;
	for (size_t len = 0; len < 128; len++) {
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, img + off, len);
		int rc = qcow2_parse_snapshots(cut, len, 2, s, 4);
		assert_true(rc == -1 || rc <= 2);
		free(cut);
	}
	off = (size_t)full.bitmap_dir_offset;
	for (size_t len = 0; len < 64; len++) {
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, img + off, len);
		int rc = qcow2_parse_bitmaps(cut, len, 1, b, 4);
		assert_true(rc == -1 || rc == 1);
		free(cut);
	}
	/* A count far larger than the table is refused, not trusted. */
	off = (size_t)full.snapshots_offset;
	assert_int_equal(qcow2_parse_snapshots(img + off, 200, 100000, s, 4),
	    -1);
	free(img);
}

/*
 * evil.qcow2's header, made by qemu-img 7.2 (create -o data_file=x,
 * data_file_raw=on; amend -o data_file=/etc/passwd): an image whose data
 * is another file of the host.  Also fuzz/corpus/fuzz_qcow2/data-file.qcow2.
 */
static const char evil_hex[] =
	"514649fb0000000300000000000000000000000000000010000000000010000000000000"
	"000000010000000000030000000000000001000000000001000000000000000000000000"
	"000000000000000400000000000000000000000000000002000000040000007000000000"
	"00000000444154410000000b2f6574632f70617373776400000000006803f85700000180"
	"000064697274792062697400000000000000000000000000000000000000000000000000"
	"0000000000000000000000000001636f7272757074206269740000000000000000000000"
	"000000000000000000000000000000000000000000000000000265787465726e616c2064"
	"6174612066696c6500000000000000000000000000000000000000000000000000000000"
	"0003636f6d7072657373696f6e2074797065000000000000000000000000000000000000"
	"0000000000000000000000000004657874656e646564204c3220656e7472696573000000"
	"00000000000000000000000000000000000000000000000001006c617a7920726566636f"
	"756e74730000000000000000000000000000000000000000000000000000000000000000"
	"02006269746d617073000000000000000000000000000000000000000000000000000000"
	"00000000000000000000000002017261772065787465726e616c20646174610000000000"
	"0000000000000000000000000000000000000000000000000000000000000000";

static uint8_t *
unhex(const char *hex, size_t *len)
{
	size_t n = strlen(hex) / 2;
	uint8_t *b = calloc(1, n < 65536 ? 65536 : n);

	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		b[i] = (uint8_t)v;
	}
	*len = n;
	return b;
}

static void
test_plain(void **state)
{
	uint8_t *img = build_image(), *evil;
	struct qcow2_header h;
	char err[256];
	size_t len;

	(void)state;
	/* The real image: a backing file (the caller's to judge), bitmaps. */
	assert_int_equal(qcow2_parse_header(img, 65536, &h, err, sizeof(err)), 0);
	assert_int_equal(qcow2_plain(&h, err, sizeof(err)), 0);

	/* The crafted one: refused, naming the file it points to. */
	evil = unhex(evil_hex, &len);
	assert_int_equal(qcow2_parse_header(evil, len, &h, err, sizeof(err)), 0);
	assert_true(h.incompatible & QCOW2_INCOMPAT_DATA_FILE);
	assert_string_equal(h.data_file, "/etc/passwd");
	assert_int_equal(qcow2_plain(&h, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "external data file: \"/etc/passwd\""));
	/* The bit alone, or the extension alone, or the raw flag alone. */
	evil[79] = 0;
	assert_int_equal(qcow2_parse_header(evil, len, &h, err, sizeof(err)), 0);
	assert_int_equal(qcow2_plain(&h, err, sizeof(err)), -1);
	free(evil);

	/* Each feature bit vmgr does not know, one at a time. */
	for (int bit = 0; bit < 64; bit++) {
		uint8_t *m = build_image();
		m[79 - bit / 8] |= (uint8_t)(1u << (bit % 8));
		assert_int_equal(qcow2_parse_header(m, 65536, &h, err,
		    sizeof(err)), 0);
		int known = bit == 0 || bit == 3 || bit == 4;
		assert_int_equal(qcow2_plain(&h, err, sizeof(err)), known ? 0 : -1);
		m[79 - bit / 8] &= (uint8_t)~(1u << (bit % 8));
		m[95 - bit / 8] |= (uint8_t)(1u << (bit % 8));	/* autoclear */
		assert_int_equal(qcow2_parse_header(m, 65536, &h, err,
		    sizeof(err)), 0);
		assert_int_equal(qcow2_plain(&h, err, sizeof(err)), bit == 0 ? 0 :
		    -1);
		free(m);
	}
	/* Encryption, the old way (crypt_method) or LUKS. */
	img[35] = 1;
	assert_int_equal(qcow2_parse_header(img, 65536, &h, err, sizeof(err)), 0);
	assert_int_equal(qcow2_plain(&h, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "encrypted"));
	img[35] = 0;
	/* An extension of a type nobody knows, in place of the feature table. */
	assert_int_equal(qcow2_parse_header(img, 65536, &h, err, sizeof(err)), 0);
	for (size_t off = 104; off + 4 < 600; off++)
		if (img[off] == 0x68 && img[off + 1] == 0x03 && img[off + 2] ==
		    0xf8 && img[off + 3] == 0x57) {
			img[off] = 0x12;
			break;
		}
	assert_int_equal(qcow2_parse_header(img, 65536, &h, err, sizeof(err)), 0);
	assert_int_equal(qcow2_plain(&h, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "0x1203f857"));
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_image),
		cmocka_unit_test(test_damage),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_plain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
