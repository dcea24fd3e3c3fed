/* Host directories shared with the guest over virtio-fs: one virtiofsd per
 * directory (Debian's, from QEMU), on a listening socket made here and
 * handed over with --fd, so the VMM can connect as soon as it is spawned;
 * then the backend's add_fs. The virtiofsd is the VM's: it leaves once
 * the VMM closes its end, and is ended with the VM otherwise. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "husk/sock.h"
#include "vmm.h"

#define DEFAULT_VIRTIOFSD "/usr/lib/qemu/virtiofsd"
/* What virtiofsd gets to leave after the VMM went, before SIGKILL. */
#define VIRTIOFSD_LEAVE_MS 1000

static int check_tag(const char *tag, struct husk_err *err)
{
	size_t n = tag ? strlen(tag) : 0;
	if (n == 0 || n > HUSK_SHARE_TAG_MAX || tag[0] == '.' ||
	    strspn(tag, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n)
		return husk_err_set(err, -EINVAL,
				    "share tag \"%s\": want 1 to %d of [A-Za-z0-9._-], not starting "
				    "with '.'",
				    tag ? tag : "", HUSK_SHARE_TAG_MAX);
	return 0;
}

bool husk_vm_has_share(const struct husk_vm *vm, const char *tag)
{
	for (unsigned i = 0; i < vm->n_shares; i++)
		if (strcmp(vm->shares[i].tag, tag) == 0)
			return true;
	return false;
}

int husk_vm_share_pidfd(const struct husk_vm *vm, const char *tag)
{
	for (unsigned i = 0; i < vm->n_shares; i++)
		if (strcmp(vm->shares[i].tag, tag) == 0)
			return vm->shares[i].pidfd;
	return -1;
}

/* virtiofsd on `listen_fd` serving `dir`; its stderr goes to `log`. */
static int spawn_virtiofsd(const char *program, const char *dir, int listen_fd, const char *log,
			   struct husk_vm_share *sh, struct husk_err *err)
{
	char fdarg[32], source[PATH_MAX + 16];
	snprintf(fdarg, sizeof(fdarg), "--fd=%d", listen_fd);
	if (husk_path_fmt(source, sizeof(source), "source=%s", dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "share %s: path too long", dir);
	_cleanup_fd_ int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd < 0)
		return husk_err_sys(err, -errno, "share %s: open %s", sh->tag, log);
	/* cache=auto: the guest caches for a second, so a host's change (a
	 * ConfigMap's ..data swap) shows within one. announce_submounts: the
	 * host's mounts under dir are mounts in the guest too, with inode
	 * numbers of their own. */
	const char *argv[] = { program, fdarg, "-o", source, "-o", "cache=auto",
			       "-o", "announce_submounts", "-o", "log_level=warn", NULL };
	const int keep[] = { listen_fd };
	struct husk_spawn s = { .argv = argv, .stdin_fd = -1, .stdout_fd = logfd,
				.stderr_fd = logfd, .keep_fds = keep, .n_keep = 1,
				.die_with_parent = true };
	return husk_spawn(&s, &sh->pid, &sh->pidfd, err);
}

int husk_vm_add_share(struct husk_vm *vm, const struct husk_share *share, struct husk_err *err)
{
	int r = husk_hotplug_usable(vm, err);
	if (r < 0 || (r = check_tag(share->tag, err)) < 0)
		return r;
	if (husk_vm_has_share(vm, share->tag))
		return husk_err_set(err, -EEXIST, "share tag %s: already in VM %s", share->tag,
				    vm->name);
	if (vm->n_shares == HUSK_SHARES_MAX)
		return husk_err_set(err, -ENOSPC, "VM %s: at most %d shared directories", vm->name,
				    HUSK_SHARES_MAX);
	struct stat st;
	if (!share->dir || share->dir[0] != '/' || stat(share->dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return husk_err_set(err, share->dir && share->dir[0] == '/' ? -ENOENT : -EINVAL,
				    "share %s: \"%s\" is not an existing absolute directory",
				    share->tag, share->dir ? share->dir : "");
	const char *program = share->virtiofsd ? share->virtiofsd : getenv("HUSK_VIRTIOFSD");
	if (!program || !*program)
		program = DEFAULT_VIRTIOFSD;
	char sock[PATH_MAX], log[PATH_MAX];
	if (husk_path_fmt(sock, sizeof(sock), "%s/fs-%s.sock", vm->dir, share->tag) < 0 ||
	    husk_path_fmt(log, sizeof(log), "%s/virtiofsd-%s.log", vm->dir, share->tag) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "VM %s: directory path too long", vm->name);
	unlink(sock);
	_cleanup_fd_ int lfd = husk_unix_listen(sock, err);
	if (lfd < 0)
		return husk_err_wrap(err, "share %s", share->tag);
	/* virtiofsd accepts once, blocking. */
	int fl = fcntl(lfd, F_GETFL);
	if (fl < 0 || fcntl(lfd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return husk_err_sys(err, -errno, "share %s: socket %s", share->tag, sock);
	struct husk_vm_share *sh = &vm->shares[vm->n_shares];
	*sh = (struct husk_vm_share){ .pid = 0, .pidfd = -1 };
	snprintf(sh->tag, sizeof(sh->tag), "%s", share->tag);
	r = spawn_virtiofsd(program, share->dir, lfd, log, sh, err);
	/* virtiofsd's copy only: should it die, QEMU's connect is refused at
	 * once instead of waiting in a queue nobody serves. */
	close(take_fd(&lfd));
	if (r < 0)
		return husk_err_wrap(err, "share %s", share->tag);
	/* The VMM connects now; virtiofsd accepts when it is up. */
	if ((r = vm->vmm->add_fs(vm, share->tag, sock, err)) < 0) {
		husk_end_child(&sh->pid, &sh->pidfd, 0, NULL);
		char tail[512] = "";
		_cleanup_fd_ int fd = open(log, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, tail, sizeof(tail) - 1) : -1;
		if (n > 0) {
			tail[n] = '\0';
			tail[strcspn(tail, "\n")] = '\0';
			husk_err_wrap(err, "virtiofsd said \"%s\"", tail);
		}
		unlink(sock);
		return husk_err_wrap(err, "share %s (%s)", share->tag, share->dir);
	}
	vm->n_shares++;
	return 0;
}

void husk_shares_end(struct husk_vm *vm)
{
	for (unsigned i = 0; i < vm->n_shares; i++) {
		struct husk_vm_share *sh = &vm->shares[i];
		int r = sh->pid > 0 ? husk_reap(sh->pid, sh->pidfd, VIRTIOFSD_LEAVE_MS, NULL) : 0;
		if (sh->pid > 0 && (r == 0 || r == -ECHILD)) {
			sh->pid = 0;
			close(sh->pidfd);
			sh->pidfd = -1;
		}
		husk_end_child(&sh->pid, &sh->pidfd, VIRTIOFSD_LEAVE_MS, NULL);
	}
}
