/*
 * session_frame: the framers shipped with the session engine (DNS, Kerberos
 * and LDAP over TCP); see include/berth/session.h.
 *
 * Each framer rejects a bad header as soon as the bytes that make it bad have
 * arrived, so a peer cannot hold a buffer open with a header that can never
 * become valid.
 */
#include "session_int.h"

/* A big-endian unsigned integer of n (<= 4) octets. */
static uint32_t be_uint(const uint8_t *p, size_t n)
{
	uint32_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* The common tail: a header of hdr bytes announcing body bytes. */
static enum sess_frame frame_body(size_t len, size_t hdr, uint64_t body,
				  size_t max_msg, size_t *msg_len)
{
	if (body > max_msg)
		return SESS_FRAME_TOO_BIG;
	if (len < hdr + body)
		return SESS_FRAME_NEED_MORE;
	*msg_len = hdr + (size_t)body;
	return SESS_FRAME_COMPLETE;
}

enum sess_frame sess_frame_len16(const uint8_t *buf, size_t len,
				 size_t max_msg, size_t *msg_len)
{
	if (len < 2)
		return SESS_FRAME_NEED_MORE;
	uint32_t body = be_uint(buf, 2);
	/* RFC 1035 has no empty message: a zero length is garbage. */
	if (body == 0)
		return SESS_FRAME_MALFORMED;
	return frame_body(len, 2, body, max_msg, msg_len);
}

enum sess_frame sess_frame_len32(const uint8_t *buf, size_t len,
				 size_t max_msg, size_t *msg_len)
{
	/*
	 * RFC 4120 7.2.2 reserves the high bit for a length extension nobody
	 * defined; the RFC answers it with KRB_ERR_FIELD_TOOLONG, the engine
	 * closes the session and counts it malformed.
	 */
	if (len >= 1 && (buf[0] & 0x80u))
		return SESS_FRAME_MALFORMED;
	if (len < 4)
		return SESS_FRAME_NEED_MORE;
	uint32_t body = be_uint(buf, 4);
	if (body == 0)
		return SESS_FRAME_MALFORMED;
	return frame_body(len, 4, body, max_msg, msg_len);
}

enum sess_frame sess_frame_ber(const uint8_t *buf, size_t len, size_t max_msg,
			       size_t *msg_len)
{
	/* Every LDAPMessage is a universal constructed SEQUENCE. */
	if (len < 1)
		return SESS_FRAME_NEED_MORE;
	if (buf[0] != 0x30u)
		return SESS_FRAME_MALFORMED;
	if (len < 2)
		return SESS_FRAME_NEED_MORE;
	uint8_t first = buf[1];
	if (first < 0x80u)
		return frame_body(len, 2, first, max_msg, msg_len);
	/* 0x80 is the indefinite form, which LDAP (RFC 4511 5.1) forbids. */
	size_t octets = first & 0x7fu;
	if (octets == 0 || octets > 4)
		return SESS_FRAME_MALFORMED;
	if (len < 2 + octets)
		return SESS_FRAME_NEED_MORE;
	return frame_body(len, 2 + octets, be_uint(buf + 2, octets), max_msg,
			  msg_len);
}
