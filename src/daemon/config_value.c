/*
 * config_value: the parsers and formatters of single config values
 * (durations, booleans, numbers, socket addresses, protocol names), used by
 * the loader (config.c) and exported through config.h for the daemon and
 * the tests.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "daemon/config_int.h"

int config_parse_duration(const char *text, uint64_t *ms, char *err, size_t errlen)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 },
	};
	if (!*text) {
		snprintf(err, errlen, "empty duration");
		return -EINVAL;
	}
	const char *s = text;
	uint64_t n = 0;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (n > (UINT64_MAX - d) / 10)
			goto range;
		n = n * 10 + d;
	}
	for (size_t i = 0; s != text && i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s, units[i].unit) != 0)
			continue;
		if (n > UINT64_MAX / units[i].ms)
			goto range;
		*ms = n * units[i].ms;
		return 0;
	}
	snprintf(err, errlen, "'%s' is not a duration (examples: 250ms, 10s, 2m, 1h)",
		 text);
	return -EINVAL;
range:
	snprintf(err, errlen, "'%s' is too large a duration", text);
	return -ERANGE;
}

int config_parse_bool(const char *text, bool *out, char *err, size_t errlen)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
			*out = strcasecmp(text, yes[i]) == 0;
			return 0;
		}
	}
	snprintf(err, errlen, "'%s' is not a boolean (yes/no, true/false, on/off, 1/0)",
		 text);
	return -EINVAL;
}

int config__parse_number(const char *text, uint32_t min, uint32_t max,
			 uint32_t *out, char *err, size_t errlen)
{
	size_t digits = strspn(text, "0123456789");
	if (digits == 0 || text[digits]) {
		snprintf(err, errlen, "'%s' is not a number", text);
		return -EINVAL;
	}
	uint64_t n = 0;
	for (size_t i = 0; i < digits && n <= max; i++)
		n = n * 10 + (unsigned)(text[i] - '0');
	if (n < min || n > max) {
		snprintf(err, errlen, "'%s' is out of range %u..%u", text, min, max);
		return -ERANGE;
	}
	*out = (uint32_t)n;
	return 0;
}

int config__parse_host(const char *host, uint16_t port, struct config_addr *out)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
		*out = (struct config_addr){ .len = sizeof(sin) };
		memcpy(&out->sa, &sin, sizeof(sin));
		return 0;
	}
	char addr[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	if (snprintf(addr, sizeof(addr), "%s", host) >= (int)sizeof(addr))
		return -EINVAL;
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	char *scope = strchr(addr, '%');
	if (scope)
		*scope++ = '\0';
	if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) != 1)
		return -EINVAL;
	if (scope) {
		uint32_t id;
		char why[8];
		/* An empty scope, or a number no interface index can be (0),
		 * is no name of an interface either: just a bad address. */
		bool numeric = scope[strspn(scope, "0123456789")] == '\0';
		int bad = config__parse_number(scope, 1, UINT32_MAX, &id, why,
					       sizeof(why));
		if (bad && numeric)
			return -EINVAL;
		if (bad && (id = if_nametoindex(scope)) == 0)
			return -ENODEV;
		sin6.sin6_scope_id = id;
	}
	*out = (struct config_addr){ .len = sizeof(sin6) };
	memcpy(&out->sa, &sin6, sizeof(sin6));
	return 0;
}

int config_parse_addr(const char *text, uint16_t default_port,
		      struct config_addr *out, char *err, size_t errlen)
{
	const char *host = text, *port = NULL;
	size_t hlen = strlen(text);
	const char *colon = strchr(text, ':');
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || (close[1] && close[1] != ':')) {
			snprintf(err, errlen, "'%s' is not an address ([IPv6]:PORT expected)",
				 text);
			return -EINVAL;
		}
		host = text + 1;
		hlen = (size_t)(close - host);
		port = close[1] ? close + 2 : NULL;
	} else if (colon && !strchr(colon + 1, ':')) {
		hlen = (size_t)(colon - text);
		port = colon + 1;
	}
	uint32_t portnum = default_port;
	char hostbuf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2], why[64];
	if (port && config__parse_number(port, 1, 65535, &portnum, why,
					 sizeof(why)) != 0) {
		snprintf(err, errlen, "'%s': bad port: %s", text, why);
		return -EINVAL;
	}
	if (portnum == 0) {
		snprintf(err, errlen, "'%s' has no port (write ADDRESS:PORT)", text);
		return -EINVAL;
	}
	if (hlen == 0 || hlen >= sizeof(hostbuf)) {
		snprintf(err, errlen, "'%s' is not a numeric IP address", text);
		return -EINVAL;
	}
	memcpy(hostbuf, host, hlen);
	hostbuf[hlen] = '\0';
	int rc = config__parse_host(hostbuf, (uint16_t)portnum, out);
	if (rc == -ENODEV) {
		snprintf(err, errlen, "'%s': this host has no interface '%s' (the "
			 "scope after %%)", text, strchr(hostbuf, '%') + 1);
		return -EINVAL;
	}
	if (rc != 0) {
		snprintf(err, errlen, "'%s' is not a numeric IP address", text);
		return -EINVAL;
	}
	return 0;
}

uint16_t config_addr_port(const struct config_addr *addr)
{
	if (addr->sa.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&addr->sa)->sin_port);
	if (addr->sa.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&addr->sa)->sin6_port);
	return 0;
}

void config_listen_ports(const struct berth_config *cfg, struct portset *out)
{
	for (size_t i = 0; i < cfg->nservices; i++)
		for (size_t j = 0; j < cfg->services[i].nlisten; j++)
			portset_add(out, config_addr_port(&cfg->services[i].listen[j]));
	if (cfg->metrics.enabled)
		portset_add(out, config_addr_port(&cfg->metrics.listen));
}

int config_format_addr(const struct config_addr *addr, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	if (addr->sa.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr->sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		return snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	}
	if (addr->sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&addr->sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		if (sin6->sin6_scope_id)
			return snprintf(buf, len, "[%s%%%u]:%u", host,
					(unsigned)sin6->sin6_scope_id,
					ntohs(sin6->sin6_port));
		return snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	}
	return -1;
}

const char *config_protocol_name(enum config_protocol protocol)
{
	switch (protocol) {
	case CONFIG_PROTO_DNS: return "dns";
	case CONFIG_PROTO_KERBEROS: return "kerberos";
	case CONFIG_PROTO_LDAP: return "ldap";
	}
	return "?";
}
