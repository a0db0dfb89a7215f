/*
 * fuzz_qcow2.c - libFuzzer harness for the qcow2 metadata parser: the
 * input is an image's first bytes; the header is parsed and judged
 * (qcow2_plain), and the snapshot table and bitmap directory are parsed
 * from wherever the header says, when that is inside the input.  The
 * corpus has images that name an external data file and that are
 * encrypted, as qemu-img makes them.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/qcow2.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct qcow2_header h;
	struct qcow2_snapshot s[8];
	struct qcow2_bitmap b[8];
	char err[128];

	if (qcow2_parse_header(data, len, &h, err, sizeof(err)) < 0)
		return 0;
	/* A data file named, or its bit set, is never plain. */
	if (qcow2_plain(&h, err, sizeof(err)) == 0 && (h.data_file[0] ||
	    (h.incompatible & QCOW2_INCOMPAT_DATA_FILE)))
		__builtin_trap();
	if (h.snapshots_offset < len)
		qcow2_parse_snapshots(data + h.snapshots_offset,
		    len - (size_t)h.snapshots_offset, h.nb_snapshots, s, 8);
	if (h.bitmap_dir_offset < len) {
		size_t n = len - (size_t)h.bitmap_dir_offset;
		if (h.bitmap_dir_size < n)
			n = (size_t)h.bitmap_dir_size;
		qcow2_parse_bitmaps(data + h.bitmap_dir_offset, n, h.nb_bitmaps,
		    b, 8);
	}
	if (strlen(h.backing) >= sizeof(h.backing))
		__builtin_trap();
	return 0;
}
