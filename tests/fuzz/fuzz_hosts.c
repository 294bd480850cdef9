/*
 * libFuzzer harness for the hosts table: any text loads (bad lines are
 * skipped with a warning) or fails with a message, and every answer built
 * from it is a DNS message that parses, with the query's ID, QR set and the
 * query's question.  The names asked are the input's own words, so the
 * lookups find records as often as not, and every type is asked (A, AAAA,
 * PTR, ANY and one the table never holds), into a 512-octet buffer and a
 * 64 KiB one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dns/hosts.h"
#include "dns/wire.h"

#define CHECK(cond)              \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

#define MAX_WORDS 8

static void no_warn(void *arg, const char *msg)
{
	(void)arg;
	CHECK(msg && msg[0]);
}

/* A query for name (text) and type with ID 0x5151, or 0 when the name is
 * not a name. */
static size_t make_query(uint8_t *q, size_t size, const char *name, uint16_t type)
{
	if (size < DNS_HEADER_LEN + DNS_NAME_MAX + 4)
		return 0;
	memset(q, 0, DNS_HEADER_LEN);
	q[0] = q[1] = 0x51;
	q[2] = 0x01; /* RD */
	q[5] = 1;    /* QDCOUNT */
	ssize_t n = dns_name_from_text(name, q + DNS_HEADER_LEN, DNS_NAME_MAX);
	if (n <= 0)
		return 0;
	size_t pos = DNS_HEADER_LEN + (size_t)n;
	q[pos++] = (uint8_t)(type >> 8);
	q[pos++] = (uint8_t)type;
	q[pos++] = 0;
	q[pos++] = 1; /* IN */
	return pos;
}

static void ask(const struct dns_hosts *h, const char *name)
{
	static const uint16_t types[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_PTR,
					  255, DNS_TYPE_SOA };
	static const size_t sizes[] = { 512, DNS_MSG_MAX };
	static uint8_t out[DNS_MSG_MAX];
	uint8_t q[DNS_HEADER_LEN + DNS_NAME_MAX + 4];
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		size_t qlen = make_query(q, sizeof(q), name, types[t]);
		struct dns_msg qm, am;
		if (!qlen || dns_parse_query(&qm, q, qlen) != DNS_OK)
			return;
		for (size_t s = 0; s < 2; s++) {
			ssize_t n = dns_hosts_answer(h, &qm, out, sizes[s], 1232);
			if (n <= 0)
				continue;
			CHECK((size_t)n <= sizes[s]);
			CHECK(dns_parse(&am, out, (size_t)n) == DNS_OK);
			CHECK(am.hdr.id == 0x5151);
			CHECK(am.hdr.flags & DNS_FLAG_QR);
			CHECK(dns_question_matches(&qm, &am, true));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("hosts", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(write(fd, data, size) == (ssize_t)size);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct dns_hosts *h = NULL;
	char err[256] = "";
	int rc = dns_hosts_load(&h, path, 60, no_warn, NULL, err, sizeof(err));
	close(fd);
	if (rc < 0) {
		CHECK(err[0] != '\0');
		return 0;
	}
	/* Ask for the input's first words, as names. */
	char word[300];
	size_t nwords = 0, i = 0;
	while (i < size && nwords < MAX_WORDS) {
		while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n'))
			i++;
		size_t len = 0;
		while (i < size && data[i] != ' ' && data[i] != '\t' &&
		       data[i] != '\n' && data[i] != '\0' && len < sizeof(word) - 1)
			word[len++] = (char)data[i++];
		if (i < size && data[i] == '\0')
			i++;
		if (!len)
			continue;
		word[len] = '\0';
		ask(h, word);
		nwords++;
	}
	ask(h, "localhost");
	ask(h, "1.0.0.127.in-addr.arpa");
	dns_hosts_free(h);
	return 0;
}
