/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * SPANK plugin: --sqvenv=IMAGE[,IMAGE...]:MOUNTPOINT for sbatch, salloc, srun.
 *
 * At submission (local and allocator contexts, running as the submitting
 * user) it refuses a bad request at once: every image must exist, be readable
 * by the user and be a squashfs image; the mount point must be acceptable
 * (see sqv_resolve_mountpoint). The canonical request then travels to the
 * Prolog and Epilog as SPANK_SQVENV in the job-control environment.
 *
 * On the node (remote context) it turns a failure that only the Prolog could
 * see into a failed job with the Prolog's message in the job's output: the
 * Prolog itself always exits 0, because a failing Prolog drains the node.
 *
 * Plugin arguments (plugstack.conf): conf=PATH names the site configuration
 * (default SQV_DEFAULT_SITE_CONF); only state_dir is read here.
 */
#include "sqv_slurm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <slurm/spank.h>

SPANK_PLUGIN(sqvenvfs, 1);

/* Where sbatch and salloc leave the job's --sqvenv for the job's sruns
 * (Slurm's SPANK_OPTION_ENV_PREFIX, plugin name, option name); in a batch
 * script with SLURM_SPANK_ before it. */
#define SQV_OPTION_ENV "_SLURM_SPANK_OPTION_sqvenvfs_sqvenv"

static char *request;       /* canonical request, local/allocator */
static int requested;       /* remote: the job asked for an environment */
static char site_conf[PATH_MAX];

static int opt_sqvenv(int val, const char *optarg, int remote);

static struct spank_option sqvenv_option = {
	"sqvenv", "IMAGES:DIR",
	"Mount squashfs venv image(s) IMG[,IMG...] (bottom first) at DIR on every "
	"node of the job (sqvenvfs)",
	1, 0, opt_sqvenv,
};

/*
 * srun inside a job (salloc's shell, a batch script) is a step of that job:
 * the job's mounts were made by the Prolog before it started, and a step
 * has no Prolog of its own. The job's own --sqvenv comes back to srun
 * through the environment Slurm sets for it; that one is passed on again
 * (without salloc's PrologFlags=Alloc the Prolog runs at the first srun and
 * sees what that srun passes), any other is refused here rather than
 * failing on the nodes.
 * 1: the job's own value (checked at submission), 0: not inside a job,
 * -1: refused.
 */
static int step_request(const char *optarg)
{
	const char *job = getenv("SLURM_JOB_ID");
	const char *inherited = getenv(SQV_OPTION_ENV);

	if (!inherited)
		inherited = getenv("SLURM_SPANK_" SQV_OPTION_ENV);

	if (spank_context() != S_CTX_LOCAL || !job)
		return 0;
	if (inherited && strcmp(inherited, optarg) == 0)
		return 1;
	if (inherited)
		slurm_error("sqvenvfs: --sqvenv: job %s already has --sqvenv=%s; srun inside a "
			    "job cannot change it: give --sqvenv to sbatch or salloc", job,
			    inherited);
	else
		slurm_error("sqvenvfs: --sqvenv: srun inside job %s cannot mount an environment: "
			    "give --sqvenv to sbatch or salloc", job);
	return -1;
}

/*
 * A mount over the directory the job is submitted from, or over the
 * user's home, hides the job's output file (Slurm opens it after the
 * Prolog) and whatever else the job reads there: the job would fail with
 * no output at all. NULL, or the phrase that says which.
 */
static const char *hidden_dir(const char *mp, const char *cwd, char *buf,
			      size_t size)
{
	char home[PATH_MAX];
	const char *h = getenv("HOME");
	struct passwd *pw = h && *h ? NULL : getpwuid(getuid());

	if (pw)
		h = pw->pw_dir;
	if (*cwd && sqv_path_under(cwd, mp)) {
		snprintf(buf, size, "the directory you submit from (%s), where "
			 "the job's output goes", cwd);
		return buf;
	}
	if (h && realpath(h, home) && sqv_path_under(home, mp)) {
		snprintf(buf, size, "your home directory (%s)", home);
		return buf;
	}
	return NULL;
}

static int opt_sqvenv(int val, const char *optarg, int remote)
{
	char err[SQV_ERRLEN], cwd[PATH_MAX], resolved[PATH_MAX];
	struct sqv_req req;
	int missing, step;

	(void)val;
	if (remote) {
		requested = 1;
		return 0;
	}
	step = step_request(optarg);
	if (step < 0)
		return -1;
	if (step > 0) {
		free(request);
		request = strdup(optarg);
		return request ? 0 : -1;
	}
	if (!getcwd(cwd, sizeof(cwd)))
		cwd[0] = '\0';
	if (sqv_req_parse(optarg, cwd[0] ? cwd : NULL, &req, err) < 0) {
		slurm_error("sqvenvfs: %s", err);
		return -1;
	}
	for (size_t i = 0; i < req.n_images; i++) {
		int fd = sqv_open_image(req.images[i], err);

		if (fd < 0) {
			slurm_error("sqvenvfs: --sqvenv: image %s", err);
			sqv_req_free(&req);
			return -1;
		}
		close(fd);
	}
	/* A node-local mount point may not exist here; the Prolog creates it
	 * as the user. What exists here must already be acceptable. */
	if (sqv_resolve_mountpoint(req.mountpoint, getuid(), 0, resolved, &missing, err) < 0) {
		slurm_error("sqvenvfs: --sqvenv: mount point %s", err);
		sqv_req_free(&req);
		return -1;
	}
	char why[PATH_MAX + 96];
	if (!missing && hidden_dir(resolved, cwd, why, sizeof(why))) {
		slurm_error("sqvenvfs: --sqvenv: mount point %s: a mount there "
			    "would hide %s; mount below it instead", req.mountpoint,
			    why);
		sqv_req_free(&req);
		return -1;
	}
	free(request);
	request = sqv_req_format(&req);
	sqv_req_free(&req);
	if (!request) {
		slurm_error("sqvenvfs: out of memory");
		return -1;
	}
	return 0;
}

static void parse_args(int ac, char **av)
{
	site_conf[0] = '\0';
	for (int i = 0; i < ac; i++) {
		if (strncmp(av[i], "conf=", 5) == 0)
			snprintf(site_conf, sizeof(site_conf), "%s", av[i] + 5);
		else
			slurm_error("sqvenvfs: unknown plugin argument \"%s\" (plugstack.conf)",
				    av[i]);
	}
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	parse_args(ac, av);
	switch (spank_context()) {
	case S_CTX_LOCAL:
	case S_CTX_ALLOCATOR:
	case S_CTX_REMOTE:
		if (spank_option_register(sp, &sqvenv_option) != ESPANK_SUCCESS) {
			slurm_error("sqvenvfs: cannot register --sqvenv");
			return -1;
		}
		break;
	default:
		break;
	}
	return 0;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	spank_err_t rc;

	(void)ac;
	(void)av;
	if (!request)
		return 0;
	if (spank_context() != S_CTX_LOCAL && spank_context() != S_CTX_ALLOCATOR)
		return 0;
	rc = spank_job_control_setenv(sp, SQV_ENV_NAME, request, 1);
	if (rc != ESPANK_SUCCESS && !getenv("SLURM_JOB_ID")) {
		/* srun inside an allocation has no job to attach it to;
		 * anywhere else this is an error. */
		slurm_error("sqvenvfs: cannot pass --sqvenv to the job: %s", spank_strerror(rc));
		return -1;
	}
	return 0;
}

/* Runs in each task, as the user, with the task's stdout/stderr: what is
 * printed here lands in the job's output file. */
int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	char path[PATH_MAX + 64], msg[4096], err[SQV_ERRLEN], host[256];
	struct sqv_site site;
	uint32_t jobid;
	ssize_t n;
	int fd;

	(void)ac;
	(void)av;
	if (!requested || !spank_remote(sp))
		return 0;
	if (spank_get_item(sp, S_JOB_ID, &jobid) != ESPANK_SUCCESS)
		return 0;
	/* The node's name as Slurm calls it (slurmstepd's own lines say
	 * slurmstepd-NODE), which need not be its hostname. */
	if (spank_getenv(sp, "SLURMD_NODENAME", host, sizeof(host)) != ESPANK_SUCCESS &&
	    gethostname(host, sizeof(host)) < 0)
		strcpy(host, "this node");
	host[sizeof(host) - 1] = '\0';
	if (sqv_site_load(&site, site_conf, err) < 0) {
		/* The same words as the Prolog's, which met the same file. */
		fprintf(stderr, "sqvenvfs: %s: job %u not started: the node's sqvenvfs "
			"configuration is broken (%s); tell your administrator\n", host, jobid, err);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/jobs/%u.err", site.state_dir, jobid);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		n = read(fd, msg, sizeof(msg) - 1);
		close(fd);
		if (n < 0)
			n = 0;
		msg[n] = '\0';
		while (n > 0 && msg[n - 1] == '\n')
			msg[--n] = '\0';
		fprintf(stderr, "sqvenvfs: %s: job %u not started: %s\n", host, jobid,
			n ? msg : "the environment could not be mounted");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/jobs/%u", site.state_dir, jobid);
	if (access(path, F_OK) < 0) {
		fprintf(stderr, "sqvenvfs: %s: job %u not started: --sqvenv was given but this "
			"node's Prolog did not mount it (is the sqvenvfs Prolog configured?)\n",
			host, jobid);
		return -1;
	}
	return 0;
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
	(void)sp;
	(void)ac;
	(void)av;
	free(request);
	request = NULL;
	return 0;
}
