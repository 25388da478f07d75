/*
 * blockpattern: writes and verifies deterministic data patterns on a block device or file.
 * Built static with the host's gcc and copied into the guest initramfs of the VM test.
 *
 * Every 8-byte word holds a value derived from (seed, absolute byte offset of the word), so a
 * block written to or read from the wrong place is caught, not only a wrong byte.
 *
 *   blockpattern write  PATH OFFSET LENGTH SEED [direct] [sync]
 *   blockpattern verify PATH OFFSET LENGTH SEED [direct]
 *   blockpattern zero   PATH OFFSET LENGTH [direct]          (verify the range reads as zeroes)
 *   blockpattern create PATH LENGTH SEED                     (new regular file, pattern content)
 *   blockpattern tree   DIR COUNT SEED                       (many small files, see make_tree)
 *
 * OFFSET and LENGTH take an optional K/M suffix (KiB/MiB); OFFSET must be a multiple of 8, and
 * with "direct" (O_DIRECT) both must be multiples of 4096. A negative OFFSET counts from the end
 * of the device. Exit status 0 = done/identical, 1 = mismatch, 2 = usage or I/O error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1024 * 1024)

static uint64_t pattern_word(uint64_t seed, uint64_t offset)
{
    /* splitmix64 of (seed, word index): cheap, and no two words of a run are alike */
    uint64_t z = seed * 0x9E3779B97F4A7C15ULL + (offset >> 3) + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void fill(unsigned char *buf, size_t len, uint64_t seed, uint64_t offset)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t w = pattern_word(seed, offset + i);
        memcpy(buf + i, &w, len - i < 8 ? len - i : 8);
    }
}

static int parse_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno != 0 || end == s)
        return -1;
    if (*end == 'K') { v *= 1024; end++; }
    else if (*end == 'M') { v *= 1024 * 1024; end++; }
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int64_t device_size(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    if (S_ISBLK(st.st_mode)) {
        uint64_t bytes;
        if (ioctl(fd, BLKGETSIZE64, &bytes) != 0)
            return -1;
        return (int64_t)bytes;
    }
    return st.st_size;
}

static int write_file(const char *path, int64_t length, uint64_t seed, unsigned char *buf, size_t bufsize)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "blockpattern: open %s: %s\n", path, strerror(errno));
        return 2;
    }
    for (int64_t done = 0; done < length;) {
        size_t n = (size_t)(length - done < (int64_t)bufsize ? length - done : (int64_t)bufsize);
        fill(buf, n, seed, (uint64_t)done);
        ssize_t w = pwrite(fd, buf, n, (off_t)done);
        if (w != (ssize_t)n) {
            fprintf(stderr, "blockpattern: write %s: %s\n", path, w < 0 ? strerror(errno) : "short write");
            return 2;
        }
        done += (int64_t)n;
    }
    if (close(fd) != 0) {
        fprintf(stderr, "blockpattern: close %s: %s\n", path, strerror(errno));
        return 2;
    }
    return 0;
}

/* COUNT files DIR/d<i%5>/f<i> (i = 1..COUNT), sizes 1..30000 bytes spread by a prime stride, so
 * one process makes them all: forking per file under software emulation costs seconds. */
static int make_tree(const char *dir, int64_t count, uint64_t seed)
{
    static unsigned char buf[32768];
    char path[4096];
    for (int d = 0; d < 5; d++) {
        snprintf(path, sizeof path, "%s/d%d", dir, d);
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "blockpattern: mkdir %s: %s\n", path, strerror(errno));
            return 2;
        }
    }
    for (int64_t i = 1; i <= count; i++) {
        snprintf(path, sizeof path, "%s/d%d/f%" PRId64, dir, (int)(i % 5), i);
        int rc = write_file(path, i * 7919 % 30000 + 1, seed + (uint64_t)i, buf, sizeof buf);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: blockpattern write|verify PATH OFFSET LENGTH SEED [direct] [sync]\n"
                    "       blockpattern zero PATH OFFSET LENGTH [direct]\n"
                    "       blockpattern create PATH LENGTH SEED\n"
                    "       blockpattern tree DIR COUNT SEED\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return usage();
    const char *cmd = argv[1], *path = argv[2];
    int is_write = strcmp(cmd, "write") == 0, is_verify = strcmp(cmd, "verify") == 0;
    int is_zero = strcmp(cmd, "zero") == 0, is_create = strcmp(cmd, "create") == 0;
    int64_t offset = 0, length, seed = 0;
    int argi;
    if (strcmp(cmd, "tree") == 0) {
        if (argc != 5 || parse_size(argv[3], &length) || parse_size(argv[4], &seed))
            return usage();
        return make_tree(path, length, (uint64_t)seed);
    }
    if (is_create) {
        if (argc != 5 || parse_size(argv[3], &length) || parse_size(argv[4], &seed))
            return usage();
        argi = 5;
    } else if (is_write || is_verify) {
        if (argc < 6 || parse_size(argv[3], &offset) || parse_size(argv[4], &length) || parse_size(argv[5], &seed))
            return usage();
        argi = 6;
    } else if (is_zero) {
        if (argc < 5 || parse_size(argv[3], &offset) || parse_size(argv[4], &length))
            return usage();
        argi = 5;
    } else {
        return usage();
    }
    int direct = 0, sync_after = 0;
    for (; argi < argc; argi++) {
        if (strcmp(argv[argi], "direct") == 0) direct = 1;
        else if (strcmp(argv[argi], "sync") == 0) sync_after = 1;
        else return usage();
    }

    int flags = is_create ? (O_WRONLY | O_CREAT | O_TRUNC) : (is_write ? O_WRONLY : O_RDONLY);
    if (direct)
        flags |= O_DIRECT;
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "blockpattern: open %s: %s\n", path, strerror(errno));
        return 2;
    }
    if (offset < 0) {
        int64_t size = device_size(fd);
        if (size < 0) {
            fprintf(stderr, "blockpattern: size of %s: %s\n", path, strerror(errno));
            return 2;
        }
        offset += size;
    }
    int64_t align = direct ? 4096 : 8;
    if (offset < 0 || length <= 0 || offset % align || (direct && length % align)) {
        fprintf(stderr, "blockpattern: offset %" PRId64 " / length %" PRId64 " not aligned to %" PRId64 "\n",
                offset, length, align);
        return 2;
    }

    unsigned char *buf, *expect;
    if (posix_memalign((void **)&buf, 4096, CHUNK) || posix_memalign((void **)&expect, 4096, CHUNK)) {
        fprintf(stderr, "blockpattern: out of memory\n");
        return 2;
    }
    for (int64_t done = 0; done < length;) {
        size_t n = (size_t)(length - done < CHUNK ? length - done : CHUNK);
        uint64_t at = (uint64_t)(offset + done);
        if (is_zero)
            memset(expect, 0, n);
        else
            fill(expect, n, (uint64_t)seed, at);
        if (is_write || is_create) {
            ssize_t w = pwrite(fd, expect, n, (off_t)at);
            if (w != (ssize_t)n) {
                fprintf(stderr, "blockpattern: write %s at %" PRIu64 ": %s\n", path, at,
                        w < 0 ? strerror(errno) : "short write");
                return 2;
            }
        } else {
            ssize_t r = pread(fd, buf, n, (off_t)at);
            if (r != (ssize_t)n) {
                fprintf(stderr, "blockpattern: read %s at %" PRIu64 ": %s\n", path, at,
                        r < 0 ? strerror(errno) : "short read");
                return 2;
            }
            if (memcmp(buf, expect, n) != 0) {
                size_t i = 0;
                while (buf[i] == expect[i])
                    i++;
                fprintf(stderr, "blockpattern: %s differs at byte %" PRIu64 ": read 0x%02x, expected 0x%02x (%s)\n",
                        path, at + i, buf[i], expect[i], is_zero ? "zeroes" : "pattern");
                return 1;
            }
        }
        done += (int64_t)n;
    }
    if ((sync_after || is_create) && fsync(fd) != 0) {
        fprintf(stderr, "blockpattern: fsync %s: %s\n", path, strerror(errno));
        return 2;
    }
    if (close(fd) != 0) {
        fprintf(stderr, "blockpattern: close %s: %s\n", path, strerror(errno));
        return 2;
    }
    return 0;
}
