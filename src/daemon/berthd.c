/*
 * berthd: the berth daemon (berthd(8)).  Parses the command line, loads the
 * config, and runs in the foreground until SIGTERM or SIGINT; SIGHUP
 * reloads the config.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "berth/portplan.h"
#include "daemon/config.h"
#include "daemon/daemon.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

static void usage(FILE *f)
{
	fputs("usage: berthd [-c FILE] [--check]\n"
	      "\n"
	      "Runs the berth daemon in the foreground until SIGTERM or SIGINT;\n"
	      "SIGHUP reloads the config.\n"
	      "\n"
	      "Options:\n"
	      "  -c, --config FILE   config file (default: the built-in default,\n"
	      "                      the text of conf/berth.conf)\n"
	      "      --check         check the config, print 'FILE: ok' and exit;\n"
	      "                      exit 1 with the error (file:line, key) if not\n"
	      "  -h, --help          this help\n"
	      "  -V, --version       print the version\n"
	      "\n"
	      "Exit status: 0 ok, 1 config or runtime error, 2 usage error.\n",
	      f);
}

/* Load path, or the built-in default when path is NULL. */
static int load(const char *path, struct berth_config *cfg, char *err,
		size_t errlen)
{
	return path ? config_load(path, cfg, err, errlen)
		    : config_load_default(cfg, err, errlen);
}

/*
 * Checks that need more than the config's own syntax.  Returns 0 when the
 * config can run, else 1 after printing the reason to stderr.
 */
static int check_config(const struct berth_config *cfg)
{
	char err[512];
	struct plan *plan = plan_build(&cfg->ports, NULL, err, sizeof(err));
	if (!plan) {
		fprintf(stderr, "berthd: %s\n", err);
		return 1;
	}
	plan_free(plan);
	if (daemon_check_services(cfg, stderr, err, sizeof(err)) < 0) {
		fprintf(stderr, "berthd: %s\n", err);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	int check = 0, opt;
	while ((opt = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = 1;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			puts("berthd " BERTH_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "berthd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}

	char err[512];
	if (check) {
		struct berth_config cfg = { 0 };
		if (load(path, &cfg, err, sizeof(err)) != 0) {
			fprintf(stderr, "berthd: %s\n", err);
			return EXIT_FAILED;
		}
		int status = check_config(&cfg) ? EXIT_FAILED : EXIT_OK;
		if (status == EXIT_OK)
			printf("%s: ok\n", cfg.file);
		config_free(&cfg);
		return status;
	}

	struct daemon *d = daemon_new(path, err, sizeof(err));
	if (!d) {
		fprintf(stderr, "berthd: %s\n", err);
		return EXIT_FAILED;
	}
	int status = daemon_run(d) ? EXIT_FAILED : EXIT_OK;
	daemon_free(d);
	return status;
}
