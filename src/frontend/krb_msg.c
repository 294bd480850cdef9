/*
 * krb_msg: just enough DER to relay Kerberos: the message type, the
 * error-code of a KRB-ERROR, the realm and sname of a KDC request, and a
 * KRB-ERROR encoder (RFC 4120 5.9.1).  Every length is checked against the
 * bytes that hold it, so garbage of any shape is rejected, never read past.
 * See kerberos.h.
 */
#include "frontend/kerberos.h"

#include <string.h>
#include <time.h>

/* One DER element: its tag octet and its value. */
struct der {
	uint8_t tag;
	const uint8_t *val;
	size_t len;   /* value length */
	size_t total; /* tag + length octets + value */
};

/*
 * Read the element at the start of p (n bytes).  Kerberos uses only
 * low-number tags and definite lengths; anything else, or a length running
 * past n, is rejected.
 */
static bool der_read(const uint8_t *p, size_t n, struct der *out)
{
	if (n < 2 || (p[0] & 0x1f) == 0x1f)
		return false;
	size_t off = 2;
	size_t len = p[1];
	if (len & 0x80) {
		size_t k = len & 0x7f;
		if (k == 0 || k > 4 || n - 2 < k)
			return false;
		len = 0;
		for (size_t i = 0; i < k; i++)
			len = (len << 8) | p[2 + i];
		off = 2 + k;
	}
	if (len > n - off)
		return false;
	*out = (struct der){ .tag = p[0], .val = p + off, .len = len,
			     .total = off + len };
	return true;
}

/*
 * Find the element tagged tag among the elements of a SEQUENCE's value
 * (val, len bytes).  False when absent or when the walk meets garbage.
 */
static bool der_find(const uint8_t *val, size_t len, uint8_t tag,
		     struct der *out)
{
	size_t off = 0;
	while (off < len) {
		struct der e;
		if (!der_read(val + off, len - off, &e))
			return false;
		if (e.tag == tag) {
			*out = e;
			return true;
		}
		off += e.total;
	}
	return false;
}

int fe_krb_msg_type(const uint8_t *buf, size_t len)
{
	struct der e;
	if (!buf || !der_read(buf, len, &e) || (e.tag & 0xe0) != 0x60)
		return -1;
	return e.tag & 0x1f;
}

/* The SEQUENCE inside an APPLICATION-tagged message of type want. */
static bool app_sequence(const uint8_t *buf, size_t len, int want,
			 struct der *seq)
{
	struct der app;
	if (!buf || !der_read(buf, len, &app) || app.tag != (0x60 | want))
		return false;
	return der_read(app.val, app.len, seq) && seq->tag == 0x30;
}

/* The INTEGER (at most 4 octets) in field ctx of the SEQUENCE seq. */
static bool field_int(const struct der *seq, uint8_t ctx, int32_t *out)
{
	struct der field, integer;
	if (!der_find(seq->val, seq->len, ctx, &field) ||
	    !der_read(field.val, field.len, &integer) || integer.tag != 0x02 ||
	    integer.len < 1 || integer.len > 4)
		return false;
	/* Two's complement, sign taken from the first octet. */
	uint32_t v = (integer.val[0] & 0x80) ? UINT32_MAX : 0;
	for (size_t i = 0; i < integer.len; i++)
		v = (v << 8) | integer.val[i];
	*out = (int32_t)v;
	return true;
}

bool fe_krb_error_code(const uint8_t *buf, size_t len, int32_t *code)
{
	struct der seq;
	return app_sequence(buf, len, FE_KRB_ERROR, &seq) &&
	       field_int(&seq, 0xa6, code);
}

bool fe_krb_req_valid(const uint8_t *buf, size_t len)
{
	/* The fields of KDC-REQ-BODY that are not OPTIONAL (RFC 4120 5.4.1):
	 * kdc-options, realm, till, nonce, etype. */
	static const uint8_t required[] = { 0xa0, 0xa2, 0xa5, 0xa7, 0xa8 };
	int type = fe_krb_msg_type(buf, len);
	struct der app, seq, field, body, e;
	int32_t pvno, msg_type;
	if ((type != FE_KRB_AS_REQ && type != FE_KRB_TGS_REQ) ||
	    !der_read(buf, len, &app) || app.total != len ||
	    !app_sequence(buf, len, type, &seq) ||
	    !field_int(&seq, 0xa1, &pvno) || pvno != 5 ||
	    !field_int(&seq, 0xa2, &msg_type) || msg_type != type ||
	    !der_find(seq.val, seq.len, 0xa4, &field) ||
	    !der_read(field.val, field.len, &body) || body.tag != 0x30)
		return false;
	for (size_t i = 0; i < sizeof(required); i++)
		if (!der_find(body.val, body.len, required[i], &e))
			return false;
	return true;
}

bool fe_krb_req_names(const uint8_t *buf, size_t len,
		      struct fe_krb_req_names *out)
{
	*out = (struct fe_krb_req_names){ 0 };
	int type = fe_krb_msg_type(buf, len);
	struct der seq, field, body, e, inner;
	if ((type != FE_KRB_AS_REQ && type != FE_KRB_TGS_REQ) ||
	    !app_sequence(buf, len, type, &seq) ||
	    !der_find(seq.val, seq.len, 0xa4, &field) ||
	    !der_read(field.val, field.len, &body) || body.tag != 0x30)
		return false;
	/* Each name is optional: a malformed one is left out, not fatal. */
	if (der_find(body.val, body.len, 0xa2, &e) &&
	    der_read(e.val, e.len, &inner) && inner.tag == 0x1b) {
		out->realm = e.val;
		out->realm_len = inner.total;
	}
	if (der_find(body.val, body.len, 0xa3, &e) &&
	    der_read(e.val, e.len, &inner) && inner.tag == 0x30) {
		out->sname = e.val;
		out->sname_len = inner.total;
	}
	return true;
}

/* --- the encoder --- */

/* A bounded output buffer; ok turns false on the first overflow. */
struct der_out {
	uint8_t *buf;
	size_t cap, len;
	bool ok;
};

static void put_bytes(struct der_out *o, const void *p, size_t n)
{
	if (!o->ok || n > o->cap - o->len) {
		o->ok = false;
		return;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

/* A tag and a definite length in the shortest form. */
static void put_header(struct der_out *o, uint8_t tag, size_t len)
{
	uint8_t h[6] = { tag };
	size_t n = 1;
	if (len < 0x80) {
		h[n++] = (uint8_t)len;
	} else {
		size_t k = len > 0xffffff ? 4 : len > 0xffff ? 3 : len > 0xff ? 2 : 1;
		h[n++] = (uint8_t)(0x80 | k);
		for (size_t i = k; i > 0; i--)
			h[n++] = (uint8_t)(len >> (8 * (i - 1)));
	}
	put_bytes(o, h, n);
}

/* An INTEGER in the fewest two's-complement octets, wrapped in [ctx]. */
static void put_int_field(struct der_out *o, uint8_t ctx, int32_t v)
{
	uint8_t b[4];
	uint32_t u = (uint32_t)v;
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(u >> (24 - 8 * i));
	size_t start = 0;
	/* Drop leading octets that only repeat the sign of the next one. */
	while (start < 3 && ((b[start] == 0x00 && !(b[start + 1] & 0x80)) ||
			     (b[start] == 0xff && (b[start + 1] & 0x80))))
		start++;
	size_t n = 4 - start;
	put_header(o, ctx, n + 2);
	put_header(o, 0x02, n);
	put_bytes(o, b + start, n);
}

/* A ready-made TLV (tlv, len bytes) wrapped in [ctx]. */
static void put_wrapped(struct der_out *o, uint8_t ctx, const uint8_t *tlv,
			size_t len)
{
	put_header(o, ctx, len);
	put_bytes(o, tlv, len);
}

/* The e-text of the errors berth makes itself. */
static const char *error_text(int32_t error_code)
{
	return error_code == FE_KRB_ERR_FIELD_TOOLONG ?
		"berth: request length field too long" :
		"berth: no upstream KDC answered";
}

size_t fe_krb_error_encode(int32_t error_code, uint64_t now_us,
			   const struct fe_krb_req_names *names, uint8_t *out,
			   size_t cap)
{
	/* An empty GeneralString and a principal with no components stand in
	 * for names the request did not give. */
	static const uint8_t empty_realm[] = { 0x1b, 0x00 };
	static const uint8_t empty_name[] = { 0x30, 0x09, 0xa0, 0x03, 0x02, 0x01,
					      0x00, 0xa1, 0x02, 0x30, 0x00 };
	const uint8_t *realm = empty_realm, *sname = empty_name;
	size_t realm_len = sizeof(empty_realm), sname_len = sizeof(empty_name);
	if (names && names->realm) {
		realm = names->realm;
		realm_len = names->realm_len;
	}
	if (names && names->sname) {
		sname = names->sname;
		sname_len = names->sname_len;
	}
	if (realm_len > cap || sname_len > cap - realm_len)
		return 0;

	time_t secs = (time_t)(now_us / 1000000u);
	struct tm tm;
	char stime[16];
	if (!gmtime_r(&secs, &tm) ||
	    strftime(stime, sizeof(stime), "%Y%m%d%H%M%SZ", &tm) != 15)
		return 0;

	/* The SEQUENCE's content is written first and moved behind its two
	 * headers once its length, and so theirs, is known. */
	struct der_out body = { .buf = out, .cap = cap, .ok = true };
	put_int_field(&body, 0xa0, 5);
	put_int_field(&body, 0xa1, FE_KRB_ERROR);
	put_header(&body, 0xa4, 17);
	put_header(&body, 0x18, 15);
	put_bytes(&body, stime, 15);
	put_int_field(&body, 0xa5, (int32_t)(now_us % 1000000u));
	put_int_field(&body, 0xa6, error_code);
	put_wrapped(&body, 0xa9, realm, realm_len);
	put_wrapped(&body, 0xaa, sname, sname_len);
	const char *text = error_text(error_code);
	size_t text_len = strlen(text);
	put_header(&body, 0xab, text_len + 2);
	put_header(&body, 0x1b, text_len);
	put_bytes(&body, text, text_len);
	if (!body.ok)
		return 0;

	uint8_t hdr[16];
	struct der_out h = { .buf = hdr, .cap = 8, .ok = true };
	struct der_out seqh = { .buf = hdr + 8, .cap = 8, .ok = true };
	put_header(&seqh, 0x30, body.len);
	put_header(&h, 0x60 | FE_KRB_ERROR, seqh.len + body.len);
	if (!h.ok || !seqh.ok || h.len + seqh.len + body.len > cap)
		return 0;
	/* Move the content down behind the two headers. */
	memmove(out + h.len + seqh.len, body.buf, body.len);
	memcpy(out, hdr, h.len);
	memcpy(out + h.len, hdr + 8, seqh.len);
	return h.len + seqh.len + body.len;
}
