/*
 * test_fdb.c - the switch's forwarding database (src/core/fdb.c): learn,
 * refresh, look up, forget every address of a port (however many it
 * sent from, wherever they sit in the table), and make room oldest first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/fdb.h"

static void
mac_of(uint8_t mac[6], unsigned n)
{
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = (uint8_t)(n >> 24);
	mac[3] = (uint8_t)(n >> 16);
	mac[4] = (uint8_t)(n >> 8);
	mac[5] = (uint8_t)n;
}

static void
test_learn_and_lookup(void **state)
{
	struct fdb f;
	uint8_t a[6], b[6], group[6] = { 0x01, 0x00, 0x5e, 0, 0, 1 };

	(void)state;
	fdb_init(&f);
	mac_of(a, 1);
	mac_of(b, 2);
	assert_int_equal(fdb_lookup(&f, a), -1);
	fdb_learn(&f, a, 16);
	fdb_learn(&f, b, 17);
	assert_int_equal(fdb_lookup(&f, a), 16);
	assert_int_equal(fdb_lookup(&f, b), 17);
	/* A station that moves is found where it was seen last. */
	fdb_learn(&f, a, 33);
	assert_int_equal(fdb_lookup(&f, a), 33);
	assert_int_equal(f.n, 2);
	/* Group addresses are never learned. */
	fdb_learn(&f, group, 16);
	assert_int_equal(fdb_lookup(&f, group), -1);
	assert_int_equal(f.n, 2);
}

/*
 * One port that sent from several addresses, in every arrangement with
 * other ports' entries around and between them: none survives.
 */
static void
test_forget_every_entry_of_a_port(void **state)
{
	static const char *const layouts[] = {
		"XXXX", "XXXXX", "XOXOXOX", "OXXXXO", "OOXXXX", "XXXXOO",
		"XOXXOXXO", "OXOXOXOXOX", "X", "O", "", "XXXXXXXXXXXXXXXX",
	};

	(void)state;
	for (size_t l = 0; l < sizeof(layouts) / sizeof(layouts[0]); l++) {
		struct fdb f;
		int nx = 0, no = 0;
		uint8_t mac[6];

		fdb_init(&f);
		for (unsigned i = 0; layouts[l][i]; i++) {
			mac_of(mac, 100 + i);
			if (layouts[l][i] == 'X') {
				fdb_learn(&f, mac, 5 * 16 + (i % 3));
				nx++;
			} else {
				fdb_learn(&f, mac, 7 * 16);
				no++;
			}
		}
		/* Every NIC of VM 5: ports 80 to 95. */
		assert_int_equal(fdb_forget(&f, 5 * 16, 5 * 16 + 15), nx);
		assert_int_equal(f.n, no);
		for (unsigned i = 0; layouts[l][i]; i++) {
			mac_of(mac, 100 + i);
			assert_int_equal(fdb_lookup(&f, mac), layouts[l][i] ==
			    'X' ? -1 : 7 * 16);
		}
	}
}

static void
test_full_table_evicts_the_oldest(void **state)
{
	struct fdb f;
	uint8_t mac[6];

	(void)state;
	fdb_init(&f);
	for (unsigned i = 0; i < FDB_MAX; i++) {
		mac_of(mac, i);
		fdb_learn(&f, mac, (int64_t)i);
	}
	assert_int_equal(f.n, FDB_MAX);
	/* Address 0 is refreshed: address 1 is now the oldest. */
	mac_of(mac, 0);
	fdb_learn(&f, mac, 0);
	mac_of(mac, 1000);
	fdb_learn(&f, mac, 1000);
	assert_int_equal(f.n, FDB_MAX);
	mac_of(mac, 1000);
	assert_int_equal(fdb_lookup(&f, mac), 1000);
	mac_of(mac, 0);
	assert_int_equal(fdb_lookup(&f, mac), 0);
	mac_of(mac, 1);
	assert_int_equal(fdb_lookup(&f, mac), -1);
	/* The next newcomer takes address 2's place, and so on in order. */
	for (unsigned i = 0; i < 10; i++) {
		mac_of(mac, 2000 + i);
		fdb_learn(&f, mac, 2000 + i);
		mac_of(mac, 2 + i);
		assert_int_equal(fdb_lookup(&f, mac), -1);
		mac_of(mac, 3 + i);
		assert_int_equal(fdb_lookup(&f, mac), 3 + i);
	}
	/* Learning again and again from one address never evicts others. */
	mac_of(mac, 2009);
	for (int i = 0; i < 1000; i++)
		fdb_learn(&f, mac, 2009);
	mac_of(mac, 13);
	assert_int_equal(fdb_lookup(&f, mac), 13);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_learn_and_lookup),
		cmocka_unit_test(test_forget_every_entry_of_a_port),
		cmocka_unit_test(test_full_table_evicts_the_oldest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
