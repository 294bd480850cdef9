/*
 * Unit tests for the session framers as pure functions: partial headers and
 * bodies, exact messages, a message followed by the next one, oversized
 * lengths and every malformed header form.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "berth/session.h"

/* Every prefix of buf shorter than full must ask for more. */
static void assert_prefixes_need_more(sess_frame_fn *fn, const uint8_t *buf,
				      size_t full, size_t max_msg)
{
	for (size_t n = 0; n < full; n++) {
		size_t msg_len = 12345;
		assert_int_equal(fn(buf, n, max_msg, &msg_len),
				 SESS_FRAME_NEED_MORE);
		assert_int_equal(msg_len, 12345);
	}
}

static void test_len16(void **state)
{
	(void)state;
	const uint8_t two[] = { 0x00, 0x03, 'a', 'b', 'c', 0x00, 0x01, 'z' };
	size_t msg_len = 0;
	assert_prefixes_need_more(sess_frame_len16, two, 5, 512);
	assert_int_equal(sess_frame_len16(two, 5, 512, &msg_len),
			 SESS_FRAME_COMPLETE);
	assert_int_equal(msg_len, 5);
	/* Two messages back to back: the first is reported, then the next. */
	assert_int_equal(sess_frame_len16(two, sizeof(two), 512, &msg_len),
			 SESS_FRAME_COMPLETE);
	assert_int_equal(msg_len, 5);
	assert_int_equal(sess_frame_len16(two + 5, 3, 512, &msg_len),
			 SESS_FRAME_COMPLETE);
	assert_int_equal(msg_len, 3);
	/* At the bound exactly is fine, one over is too big. */
	const uint8_t big[] = { 0x02, 0x00 };
	assert_int_equal(sess_frame_len16(big, 2, 512, &msg_len),
			 SESS_FRAME_NEED_MORE);
	assert_int_equal(sess_frame_len16(big, 2, 511, &msg_len),
			 SESS_FRAME_TOO_BIG);
	const uint8_t zero[] = { 0x00, 0x00, 0x00 };
	assert_int_equal(sess_frame_len16(zero, 3, 512, &msg_len),
			 SESS_FRAME_MALFORMED);
}

static void test_len32(void **state)
{
	(void)state;
	const uint8_t msg[] = { 0, 0, 0, 2, 0x6a, 0x00, 0xff };
	size_t msg_len = 0;
	assert_prefixes_need_more(sess_frame_len32, msg, 6, 4096);
	assert_int_equal(sess_frame_len32(msg, sizeof(msg), 4096, &msg_len),
			 SESS_FRAME_COMPLETE);
	assert_int_equal(msg_len, 6);
	/* The reserved high bit is rejected as soon as its byte arrives. */
	const uint8_t high[] = { 0x80, 0, 0, 1, 0 };
	assert_int_equal(sess_frame_len32(high, 1, 4096, &msg_len),
			 SESS_FRAME_MALFORMED);
	assert_int_equal(sess_frame_len32(high, sizeof(high), 4096, &msg_len),
			 SESS_FRAME_MALFORMED);
	const uint8_t big[] = { 0x00, 0x01, 0x00, 0x01 };
	assert_int_equal(sess_frame_len32(big, 4, 65536, &msg_len),
			 SESS_FRAME_TOO_BIG);
	assert_int_equal(sess_frame_len32(big, 4, 65537, &msg_len),
			 SESS_FRAME_NEED_MORE);
	const uint8_t zero[] = { 0, 0, 0, 0 };
	assert_int_equal(sess_frame_len32(zero, 4, 4096, &msg_len),
			 SESS_FRAME_MALFORMED);
}

static void test_ber_short_and_long(void **state)
{
	(void)state;
	size_t msg_len = 0;
	/* Short form: SEQUENCE of 3 bytes, then the start of the next one. */
	const uint8_t shortf[] = { 0x30, 0x03, 0x02, 0x01, 0x01, 0x30 };
	assert_prefixes_need_more(sess_frame_ber, shortf, 5, 1024);
	assert_int_equal(sess_frame_ber(shortf, sizeof(shortf), 1024, &msg_len),
			 SESS_FRAME_COMPLETE);
	assert_int_equal(msg_len, 5);

	/* Long form, two octets: 0x0100 = 256 bytes of body. */
	uint8_t longf[4 + 256];
	memset(longf, 0x04, sizeof(longf));
	longf[0] = 0x30;
	longf[1] = 0x82;
	longf[2] = 0x01;
	longf[3] = 0x00;
	assert_prefixes_need_more(sess_frame_ber, longf, sizeof(longf), 1024);
	assert_int_equal(sess_frame_ber(longf, sizeof(longf), 1024, &msg_len),
			 SESS_FRAME_COMPLETE);
	assert_int_equal(msg_len, sizeof(longf));
	assert_int_equal(sess_frame_ber(longf, sizeof(longf), 255, &msg_len),
			 SESS_FRAME_TOO_BIG);

	/* Four length octets is the most accepted. */
	const uint8_t four[] = { 0x30, 0x84, 0x00, 0x00, 0x00, 0x01, 0x05 };
	assert_int_equal(sess_frame_ber(four, sizeof(four), 1024, &msg_len),
			 SESS_FRAME_COMPLETE);
	assert_int_equal(msg_len, 7);
	const uint8_t huge[] = { 0x30, 0x84, 0x7f, 0xff, 0xff, 0xff };
	assert_int_equal(sess_frame_ber(huge, sizeof(huge), 1u << 20, &msg_len),
			 SESS_FRAME_TOO_BIG);
}

static void test_ber_malformed(void **state)
{
	(void)state;
	size_t msg_len = 0;
	const uint8_t indefinite[] = { 0x30, 0x80, 0x02, 0x01, 0x01, 0, 0 };
	assert_int_equal(sess_frame_ber(indefinite, sizeof(indefinite), 1024,
					&msg_len),
			 SESS_FRAME_MALFORMED);
	const uint8_t five[] = { 0x30, 0x85, 0, 0, 0, 0, 1 };
	assert_int_equal(sess_frame_ber(five, 2, 1024, &msg_len),
			 SESS_FRAME_MALFORMED);
	const uint8_t reserved[] = { 0x30, 0xff };
	assert_int_equal(sess_frame_ber(reserved, 2, 1024, &msg_len),
			 SESS_FRAME_MALFORMED);
	const uint8_t tag[] = { 0x31, 0x01, 0x00 };
	assert_int_equal(sess_frame_ber(tag, 1, 1024, &msg_len),
			 SESS_FRAME_MALFORMED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_len16),
		cmocka_unit_test(test_len32),
		cmocka_unit_test(test_ber_short_and_long),
		cmocka_unit_test(test_ber_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
