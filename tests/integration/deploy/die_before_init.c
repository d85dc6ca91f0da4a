/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * An LD_PRELOAD shim for the Slurm test: the daemon is killed (SIGKILL)
 * the moment it would start serving, after its mount and before it answers
 * the kernel's INIT. That is what a crash at that moment leaves: a FUSE
 * mount in mountinfo that nobody will ever serve.
 */
#include <signal.h>

struct fuse_session;
struct fuse_loop_config;

int fuse_session_loop(struct fuse_session *se);
int fuse_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config);

int fuse_session_loop(struct fuse_session *se)
{
	(void)se;
	raise(SIGKILL);
	return -1;
}

int fuse_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config)
{
	(void)se;
	(void)config;
	raise(SIGKILL);
	return -1;
}
