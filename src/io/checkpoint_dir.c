/* checkpoint_dir.c - the directories of a run (see include/larch/checkpoint.h
 * and docs/checkpoints.md): the lock that keeps a second run out, fresh run
 * ids, and the preparation of a checkpoint directory before a run's first
 * save (stale temporary files removed, checkpoints of other lineages moved
 * aside). One process (rank 0) does all of it; the trainer agrees on the
 * outcome with the other ranks. */
#include "larch/checkpoint.h"
#include "core/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void larch_ckpt_new_run_id(char *out, size_t len)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {   /* no entropy yet: time and pid */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)getpid();
        v ^= (uintptr_t)&v;
        v *= 0x9E3779B97F4A7C15ULL;
    }
    snprintf(out, len, "%016llx", (unsigned long long)v);
}

/* ---- the lock ---- */

larch_status larch_dir_lock(const char *dir, const char *what, int *fd)
{
    *fd = -1;
    larch_status s = larch_mkdir_p(dir);
    if (s) return larch_fail_context(s, "%s", what);
    char path[4200], probe[4200];
    snprintf(path, sizeof path, "%s/.larch.lock", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (f < 0) return larch_fail(LARCH_ERR_IO, "%s %s is not writable: cannot create %s: %s", what, dir, path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        if (err == EWOULDBLOCK) {
            char holder[256] = "";
            ssize_t n = pread(f, holder, sizeof holder - 1, 0);
            holder[n > 0 ? n : 0] = '\0';
            holder[strcspn(holder, "\n")] = '\0';
            close(f);
            return larch_fail(LARCH_ERR_IO, "%s %s is in use by another larch run (%s; lock file %s): give this run "
                              "another directory, or wait until that run ends", what, dir,
                              holder[0] ? holder : "holder unknown", path);
        }
        /* a file system without locks (some network mounts): the run goes on unprotected */
        if (err != ENOLCK && err != EOPNOTSUPP && err != ENOSYS) {
            close(f);
            return larch_fail(LARCH_ERR_IO, "cannot lock %s: %s", path, strerror(err));
        }
    }
    /* the lock file may be left from an earlier run: check that new files can be created */
    char id[24];
    larch_ckpt_new_run_id(id, sizeof id);
    snprintf(probe, sizeof probe, "%s/.larch.probe.%s", dir, id);
    int p = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (p < 0) {
        int err = errno;
        close(f);
        return larch_fail(LARCH_ERR_IO, "%s %s is not writable: cannot create a file in it: %s", what, dir, strerror(err));
    }
    close(p);
    unlink(probe);
    char host[128] = "?", when[64] = "?";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    char text[400];
    int n = snprintf(text, sizeof text, "pid %d on %s since %s\n", (int)getpid(), host, when);
    if (ftruncate(f, 0) != 0 || pwrite(f, text, (size_t)n, 0) != n) {
        int err = errno;
        close(f);
        return larch_fail(LARCH_ERR_IO, "%s %s is not writable: cannot write %s: %s", what, dir, path, strerror(err));
    }
    *fd = f;
    return LARCH_OK;
}

void larch_dir_unlock(int *fd)
{
    if (*fd >= 0) close(*fd);                   /* releases the flock */
    *fd = -1;
}

/* ---- lineage ---- */

int larch_ckpt_on_lineage(const larch_ckpt_meta *meta, const char *lineage)
{
    const char *id = meta->run_id[0] ? meta->run_id : "-";
    size_t idn = strlen(id);
    for (const char *p = lineage ? lineage : ""; *p;) {
        while (*p == ' ') p++;
        const char *colon = strchr(p, ':');
        if (!colon) break;
        char *end;
        long start = strtol(colon + 1, &end, 10);
        /* the next run of the lineage started at... (none: this is the last run) */
        const char *next = end;
        while (*next == ' ') next++;
        const char *ncolon = *next ? strchr(next, ':') : NULL;
        long stop = ncolon ? strtol(ncolon + 1, NULL, 10) : -1;
        if ((size_t)(colon - p) == idn && strncmp(p, id, idn) == 0 && meta->step >= start && (stop < 0 || meta->step <= stop))
            return 1;
        p = next;
    }
    return 0;
}

/* ---- preparing the directory ---- */

static larch_status remove_stale(const char *dir, FILE *log)
{
    DIR *d = opendir(dir);
    if (!d) return larch_fail(LARCH_ERR_IO, "cannot read checkpoint directory %s: %s", dir, strerror(errno));
    struct dirent *de;
    int n = 0;
    double bytes = 0.0;
    larch_status s = LARCH_OK;
    while (!s && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, ".ckpt-", 6) != 0 || len < 14 || strcmp(de->d_name + len - 7, ".h5.tmp") != 0) continue;
        char stale[4200];
        snprintf(stale, sizeof stale, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(stale, &st) == 0) bytes += (double)st.st_size;
        if (unlink(stale) != 0 && errno != ENOENT)
            s = larch_fail(LARCH_ERR_IO, "cannot remove the stale temporary file %s: %s", stale, strerror(errno));
        else n++;
    }
    closedir(d);
    if (n && log) {
        fprintf(log, "checkpoint.dir %s: removed %d temporary file(s) of interrupted saves (%.1f MiB)\n", dir, n,
                bytes / 1048576.0);
        fflush(log);
    }
    return s;
}

larch_status larch_ckpt_prepare_dir(const char *dir, const char *lineage, const char *run_id, FILE *log, int *moved)
{
    if (moved) *moved = 0;
    larch_status s = remove_stale(dir, log);
    if (s) return s;
    char **paths = NULL;
    int n = larch_ckpt_list(dir, &paths), n_moved = 0;
    char aside[4200] = "", names[600] = "";
    for (int i = 0; i < n; i++) {
        larch_ckpt_meta meta;
        larch_status r = larch_ckpt_read_meta(paths[i], &meta);
        int keep = r == LARCH_OK && larch_ckpt_on_lineage(&meta, lineage);
        char who[64];
        if (r) snprintf(who, sizeof who, "unreadable");
        else snprintf(who, sizeof who, "run %s", meta.run_id[0] ? meta.run_id : "unknown");
        if (!r) larch_ckpt_meta_free(&meta);
        if (keep || s) continue;
        if (!aside[0]) {
            snprintf(aside, sizeof aside, "%s/abandoned-%s", dir, run_id && run_id[0] ? run_id : "run");
            s = larch_mkdir_p(aside);
            if (s) break;
        }
        const char *base = strrchr(paths[i], '/') ? strrchr(paths[i], '/') + 1 : paths[i];
        char to[4400];
        snprintf(to, sizeof to, "%s/%s", aside, base);
        if (rename(paths[i], to) != 0) {
            s = larch_fail(LARCH_ERR_IO, "cannot move %s to %s: %s", paths[i], to, strerror(errno));
            break;
        }
        n_moved++;
        size_t used = strlen(names);
        if (used + 80 < sizeof names)
            snprintf(names + used, sizeof names - used, "%s%s (%s)", used ? ", " : "", base, who);
        else if (used + 6 < sizeof names && !strstr(names, ", ..."))
            snprintf(names + used, sizeof names - used, ", ...");
    }
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    if (n_moved && !s) s = larch_fsync_path(dir);
    if (n_moved && log) {
        fprintf(log, "checkpoint.dir %s: moved %d checkpoint(s) that are not on this run's lineage (a later branch, or "
                "another run) aside to %s/: %s\n", dir, n_moved, aside, names);
        fflush(log);
    }
    if (moved) *moved = n_moved;
    return s;
}
