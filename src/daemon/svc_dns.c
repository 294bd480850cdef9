/* Placeholder: replaced by the DNS forwarder's daemon wiring. */
#include <errno.h>

#include "daemon/daemon.h"

static int dns_start(struct daemon *d, const struct config_service *svc,
		     void **state, char *err, size_t errlen)
{
	(void)d, (void)svc, (void)state, (void)err, (void)errlen;
	return -ENOSYS;
}

static void dns_stop(void *state)
{
	(void)state;
}

static bool dns_on_pool_reply(void *state, int fd, uint16_t port,
			      const struct sockaddr *from, socklen_t fromlen,
			      const uint8_t *msg, size_t len)
{
	(void)state, (void)fd, (void)port, (void)from, (void)fromlen, (void)msg,
		(void)len;
	return false;
}

static void dns_status(void *state, FILE *out)
{
	(void)state, (void)out;
}

const struct daemon_service_ops svc_dns_ops = {
	.protocol = CONFIG_PROTO_DNS,
	.start = dns_start,
	.stop = dns_stop,
	.on_pool_reply = dns_on_pool_reply,
	.status = dns_status,
};
