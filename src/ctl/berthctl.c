/* berthctl: berth's operator tool.  Parses the command line and dispatches
 * to one verb per file (see ctl.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth/portplan.h"
#include "ctl/ctl.h"

static void usage(FILE *f)
{
	fputs("usage: berthctl [-c FILE] [-s PATH] VERB [ARGS]\n"
	      "\n"
	      "Offline verbs (read the config, the kernel and /proc; no daemon needed):\n"
	      "  show dynamicport tcp|udp   the dynamic port range, netsh style\n"
	      "  show reserved              reserved ranges and where each came from\n"
	      "  check                      conflicts: reserved ports on a connection's\n"
	      "                             client end or in berthd's pool, a pool that\n"
	      "                             cannot fit; exit 1 on any (listeners on\n"
	      "                             reserved ports are listed as in use)\n"
	      "  who PORT[/udp|/tcp]        which processes hold PORT\n"
	      "  apply [--dry-run]          merge the reserved ports into the kernel's\n"
	      "                             ip_local_reserved_ports (needs root)\n"
	      "\n"
	      "Live verbs (talk to a running berthd over its control socket):\n"
	      "  status                     version, uptime, plan, pool, services and\n"
	      "                             their counters\n"
	      "  pool                       pool size, mode, range, allowed ports, ports\n"
	      "                             held, rotations, releases, every socket\n"
	      "  release PORT               make berthd give PORT up now and never draw\n"
	      "                             it again until reload\n"
	      "  sessions                   open sessions: peer, state, age, deadline\n"
	      "  reload                     reload the config (like SIGHUP)\n"
	      "\n"
	      "Options:\n"
	      "  -c, --config FILE          config file (default: the built-in default)\n"
	      "  -s, --socket PATH          control socket (default: [control] socket\n"
	      "                             of the config)\n"
	      "  -h, --help                 this help\n"
	      "  -V, --version              print the version\n"
	      "\n"
	      "Exit status: 0 ok; 1 conflicts found (check), nobody holds the port\n"
	      "(who) or a reply from berthd cut short; 2 usage, config or environment\n"
	      "error, or an error berthd answered.\n",
	      f);
}

static int run_plan_verb(const char *config, int argc, char **argv)
{
	const char *verb = argv[0];
	enum { SHOW_DYN, SHOW_RES, CHECK, APPLY } which;

	if (strcmp(verb, "show") == 0 && argc == 3 &&
	    strcmp(argv[1], "dynamicport") == 0)
		which = SHOW_DYN;
	else if (strcmp(verb, "show") == 0 && argc == 2 &&
		 strcmp(argv[1], "reserved") == 0)
		which = SHOW_RES;
	else if (strcmp(verb, "check") == 0 && argc == 1)
		which = CHECK;
	else if (strcmp(verb, "apply") == 0 &&
		 (argc == 1 || (argc == 2 && strcmp(argv[1], "--dry-run") == 0)))
		which = APPLY;
	else {
		fprintf(stderr, "berthctl: bad arguments for '%s' (see berthctl --help)\n",
			verb);
		return CTL_ERROR;
	}

	struct ctl_setup setup = { 0 };
	int rc = ctl_load(config, &setup, stderr);
	if (rc == CTL_OK) {
		const struct plan *plan = setup.plan;
		switch (which) {
		case SHOW_DYN:
			rc = ctl_show_dynamicport(plan, argv[2], stdout, stderr);
			break;
		case SHOW_RES:
			rc = ctl_show_reserved(plan, stdout, stderr);
			break;
		case CHECK:
			rc = ctl_check(plan, "/proc", stdout, stderr);
			break;
		case APPLY:
			rc = ctl_apply(plan, "/proc/sys/net/ipv4", argc == 2,
				       stdout, stderr);
			break;
		}
	}
	ctl_unload(&setup);
	return rc;
}

/* status, pool, sessions, reload take no argument; release takes a port. */
static bool is_live_verb(char **argv)
{
	static const char *const bare[] = { "status", "pool", "sessions", "reload" };
	for (size_t i = 0; i < sizeof(bare) / sizeof(bare[0]); i++)
		if (strcmp(argv[0], bare[i]) == 0)
			return true;
	return strcmp(argv[0], "release") == 0;
}

static int run_live_verb(const char *config, const char *socket_path, int argc,
			 char **argv)
{
	bool release = strcmp(argv[0], "release") == 0;
	if (argc != (release ? 2 : 1)) {
		fprintf(stderr, release ? "berthctl: usage: berthctl release PORT\n"
					: "berthctl: '%s' takes no arguments\n", argv[0]);
		return CTL_ERROR;
	}
	char command[128];
	if (release) {
		uint16_t port;
		const char *end, *why;
		if (!ctl_parse_port(argv[1], &port, &end, &why) || *end) {
			fprintf(stderr, "berthctl: release: '%s' is not a port "
				"(1-65535, digits only)\n", argv[1]);
			return CTL_ERROR;
		}
		snprintf(command, sizeof(command), "release %u", (unsigned)port);
	} else {
		snprintf(command, sizeof(command), "%s", argv[0]);
	}
	if (socket_path)
		return ctl_live(socket_path, NULL, command, stdout, stderr);

	/* The socket path comes from the config, resolved like berthd does.
	 * As root it may sit in /run/berth instead of XDG_RUNTIME_DIR: a login
	 * shell has XDG_RUNTIME_DIR set, the berthd systemd starts does not. */
	struct berth_config cfg = { 0 };
	char err[512];
	int rc = config ? config_load(config, &cfg, err, sizeof(err))
			: config_load_default(&cfg, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "berthctl: %s\n", err);
		config_free(&cfg);
		return CTL_ERROR;
	}
	rc = ctl_live(cfg.control.socket, cfg.control.root_fallback, command,
		      stdout, stderr);
	config_free(&cfg);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *config = NULL, *socket_path = NULL;
	int c;

	/* "+" stops at the verb so verbs can take their own dashed options. */
	while ((c = getopt_long(argc, argv, "+c:s:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 's':
			if (!*optarg) {
				fputs("berthctl: -s needs a control socket path, got an "
				      "empty one (see berthctl --help)\n", stderr);
				return CTL_ERROR;
			}
			socket_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return CTL_OK;
		case 'V':
			puts("berthctl " BERTH_VERSION);
			return CTL_OK;
		default:
			usage(stderr);
			return CTL_ERROR;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		usage(stderr);
		return CTL_ERROR;
	}
	if (strcmp(argv[0], "who") == 0) {
		if (argc != 2) {
			fputs("berthctl: usage: berthctl who PORT[/udp|/tcp]\n", stderr);
			return CTL_ERROR;
		}
		return ctl_who(argv[1], "/proc", stdout, stderr);
	}
	if (strcmp(argv[0], "show") == 0 || strcmp(argv[0], "check") == 0 ||
	    strcmp(argv[0], "apply") == 0)
		return run_plan_verb(config, argc, argv);
	if (is_live_verb(argv))
		return run_live_verb(config, socket_path, argc, argv);
	fprintf(stderr, "berthctl: unknown verb '%s' (see berthctl --help)\n", argv[0]);
	return CTL_ERROR;
}
