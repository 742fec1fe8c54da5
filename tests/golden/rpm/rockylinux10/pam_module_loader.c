/*
 * slurm-factory: lib/security/<module>.so of a relocatable tree (pam_slurm_adopt, pam_slurm).
 *
 * Slurm's PAM modules link libslurm.so and find it through an $ORIGIN-relative RUNPATH. The dynamic loader takes
 * $ORIGIN from the path a library was opened by, not from where a symbolic link points: linked into the system's
 * PAM directory, a module would look for libslurm there and fail. This loader has no dependency on libslurm.
 * It resolves its own path through every symbolic link and opens the real module (REAL_MODULE, relative to its
 * own directory) by that path, so the real module's $ORIGIN is inside the tree again. Both of Slurm's modules
 * implement the account hook only. Built with -DREAL_MODULE='"real/<module>.so"'.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#define PAM_SM_ACCOUNT
#include <security/pam_modules.h>

#ifndef REAL_MODULE
#error "REAL_MODULE names the module this loader opens"
#endif

typedef int (*account_hook)(pam_handle_t *, int, int, const char **);

static account_hook real_acct_mgmt(void)
{
	static account_hook hook;
	Dl_info info;
	char resolved[PATH_MAX], module[PATH_MAX];
	char *slash;
	void *handle;
	int length;

	if (hook)
		return hook;
	if (!dladdr((void *) &real_acct_mgmt, &info) || !info.dli_fname ||
	    !realpath(info.dli_fname, resolved)) {
		syslog(LOG_ERR, REAL_MODULE " (slurm-factory loader): cannot resolve the loader's own path");
		return NULL;
	}
	slash = strrchr(resolved, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	length = snprintf(module, sizeof(module), "%s/%s", resolved, REAL_MODULE);
	if (length <= 0 || length >= (int) sizeof(module))
		return NULL;
	handle = dlopen(module, RTLD_LAZY | RTLD_LOCAL);
	if (!handle) {
		syslog(LOG_ERR, REAL_MODULE " (slurm-factory loader): %s", dlerror());
		return NULL;
	}
	hook = (account_hook) dlsym(handle, "pam_sm_acct_mgmt");
	if (!hook)
		syslog(LOG_ERR, REAL_MODULE " (slurm-factory loader): %s has no pam_sm_acct_mgmt", module);
	return hook;
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	account_hook hook = real_acct_mgmt();

	if (!hook)
		return PAM_SYSTEM_ERR;
	return hook(pamh, flags, argc, argv);
}
