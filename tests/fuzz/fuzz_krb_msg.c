/*
 * libFuzzer harness for the Kerberos message reader (frontend/krb_msg) and
 * the session framers every TCP service runs on untrusted bytes.
 *
 * Beyond "no crash, no sanitizer report", each input checks properties that
 * must hold for any bytes: a message type is -1 or a tag number; a request
 * whose names were found yields names inside the input; the KRB-ERROR built
 * from those names (or from none) reads back as a KRB-ERROR with the same
 * code; a framer's COMPLETE length fits the input and its bound, and a
 * complete message stays complete (same length) with bytes appended.  A
 * broken property aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "berth/session.h"
#include "frontend/kerberos.h"

#define CHECK(cond)                    \
	do {                           \
		if (!(cond))           \
			abort();       \
	} while (0)

/* A TLV pointer from fe_krb_req_names lies inside the input. */
static void check_inside(const uint8_t *p, size_t n, const uint8_t *buf,
			 size_t len)
{
	if (!p)
		return;
	CHECK(p >= buf && n <= len && (size_t)(p - buf) <= len - n);
}

static void check_error_roundtrip(const struct fe_krb_req_names *names,
				  int32_t code)
{
	uint8_t out[4096];
	size_t n = fe_krb_error_encode(code, 1700000000123456u, names, out,
				       sizeof(out));
	if (n == 0)
		return; /* did not fit: allowed, nothing written to check */
	CHECK(n <= sizeof(out));
	CHECK(fe_krb_msg_type(out, n) == FE_KRB_ERROR);
	int32_t got = 0;
	CHECK(fe_krb_error_code(out, n, &got));
	CHECK(got == code);
}

static void check_framer(sess_frame_fn *fr, const uint8_t *buf, size_t len,
			 size_t max_msg)
{
	size_t mlen = 0;
	enum sess_frame r = fr(buf, len, max_msg, &mlen);
	CHECK(r == SESS_FRAME_NEED_MORE || r == SESS_FRAME_COMPLETE ||
	      r == SESS_FRAME_MALFORMED || r == SESS_FRAME_TOO_BIG);
	if (r != SESS_FRAME_COMPLETE)
		return;
	CHECK(mlen > 0 && mlen <= len);
	CHECK(mlen <= max_msg + SESS_FRAME_MAX_PREFIX);
	/* The message alone is still exactly one complete message. */
	size_t again = 0;
	CHECK(fr(buf, mlen, max_msg, &again) == SESS_FRAME_COMPLETE);
	CHECK(again == mlen);
	/* One byte short of it is not. */
	if (mlen > 1)
		CHECK(fr(buf, mlen - 1, max_msg, &again) != SESS_FRAME_COMPLETE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int type = fe_krb_msg_type(data, size);
	CHECK(type >= -1);

	int32_t code = 0;
	if (fe_krb_error_code(data, size, &code))
		CHECK(type == FE_KRB_ERROR);

	struct fe_krb_req_names names;
	if (fe_krb_req_names(data, size, &names)) {
		CHECK(type == FE_KRB_AS_REQ || type == FE_KRB_TGS_REQ);
		check_inside(names.realm, names.realm_len, data, size);
		check_inside(names.sname, names.sname_len, data, size);
		check_error_roundtrip(&names, FE_KRB_ERR_SVC_UNAVAILABLE);
	}
	check_error_roundtrip(NULL, (int32_t)(size * 2654435761u));

	/* A request the relay would send on is one whose names can be read,
	 * and no byte of it may be dropped or added. */
	if (fe_krb_req_valid(data, size)) {
		CHECK(fe_krb_req_names(data, size, &names));
		CHECK(!fe_krb_req_valid(data, size - 1));
	}

	/* Small bounds reach the TOO_BIG paths; large ones the rest. */
	const size_t bounds[] = { 0, 1, 64, 65535, 1u << 20 };
	for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
		check_framer(sess_frame_len16, data, size, bounds[i]);
		check_framer(sess_frame_len32, data, size, bounds[i]);
		check_framer(sess_frame_ber, data, size, bounds[i]);
	}
	return 0;
}
