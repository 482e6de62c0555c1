/* Why LD_PRELOAD might silently do nothing for CMD: find it like execvp
 * does and look at its ELF program headers.  A binary without PT_INTERP is
 * started by the kernel directly (static, or static-pie) and no dynamic
 * loader ever reads LD_PRELOAD.  We parse the headers ourselves instead of
 * running ldd/file, which may be absent and would execute or trust CMD. */
#include <elf.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

static bool is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

bool resolve_command(const char *cmd, char *out, size_t out_len)
{
    if (strchr(cmd, '/')) {
        snprintf(out, out_len, "%s", cmd);
        return is_executable_file(cmd);
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/bin:/usr/bin"; /* glibc execvp's default */
    const char *p = path;
    for (;;) {
        const char *colon = strchrnul(p, ':');
        size_t dirlen = (size_t)(colon - p);
        /* An empty PATH element means the current directory. */
        int n = dirlen ? snprintf(out, out_len, "%.*s/%s", (int)dirlen, p, cmd)
                       : snprintf(out, out_len, "./%s", cmd);
        if (n > 0 && (size_t)n < out_len && is_executable_file(out))
            return true;
        if (!*colon)
            break;
        p = colon + 1;
    }
    snprintf(out, out_len, "%s", cmd);
    return false;
}

static bool read_at(int fd, void *buf, size_t len, off_t off)
{
    return pread(fd, buf, len, off) == (ssize_t)len;
}

/* "#!/usr/bin/env python3" -> "/usr/bin/env". */
static void shebang_interp(const unsigned char *head, size_t n, char *interp, size_t len)
{
    size_t i = 2;
    while (i < n && (head[i] == ' ' || head[i] == '\t'))
        i++;
    size_t start = i;
    while (i < n && head[i] != ' ' && head[i] != '\t' && head[i] != '\n')
        i++;
    snprintf(interp, len, "%.*s", (int)(i - start), (const char *)head + start);
}

/* Look for PT_INTERP among the program headers; class is ELFCLASS32/64. */
static enum elf_kind scan_phdrs(int fd, const unsigned char *ident, char *interp, size_t len)
{
    uint64_t phoff;
    unsigned phnum, phentsize;
    if (ident[EI_CLASS] == ELFCLASS64) {
        Elf64_Ehdr eh;
        if (!read_at(fd, &eh, sizeof eh, 0))
            return ELF_UNREADABLE;
        phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = eh.e_phentsize;
    } else {
        Elf32_Ehdr eh;
        if (!read_at(fd, &eh, sizeof eh, 0))
            return ELF_UNREADABLE;
        phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = eh.e_phentsize;
    }
    for (unsigned i = 0; i < phnum && i < 4096; i++) {
        uint32_t type;
        uint64_t off, size;
        off_t at = (off_t)(phoff + (uint64_t)i * phentsize);
        if (ident[EI_CLASS] == ELFCLASS64) {
            Elf64_Phdr ph;
            if (!read_at(fd, &ph, sizeof ph, at))
                return ELF_UNREADABLE;
            type = ph.p_type, off = ph.p_offset, size = ph.p_filesz;
        } else {
            Elf32_Phdr ph;
            if (!read_at(fd, &ph, sizeof ph, at))
                return ELF_UNREADABLE;
            type = ph.p_type, off = ph.p_offset, size = ph.p_filesz;
        }
        if (type == PT_INTERP) {
            size_t n = size < len ? (size_t)size : len - 1;
            if (!read_at(fd, interp, n, (off_t)off))
                return ELF_UNREADABLE;
            interp[n] = '\0';
            return ELF_DYNAMIC;
        }
    }
    return ELF_STATIC;
}

enum elf_kind elf_classify(const char *path, char *interp, size_t interp_len)
{
    interp[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ELF_UNREADABLE;
    unsigned char head[256];
    ssize_t n = pread(fd, head, sizeof head, 0);
    enum elf_kind kind = ELF_NOT_ELF;
    if (n >= 2 && head[0] == '#' && head[1] == '!') {
        shebang_interp(head, (size_t)n, interp, interp_len);
        kind = ELF_SCRIPT;
    } else if (n >= EI_NIDENT && !memcmp(head, ELFMAG, SELFMAG) &&
               (head[EI_CLASS] == ELFCLASS64 || head[EI_CLASS] == ELFCLASS32)) {
        /* Only same-endian files: a foreign one cannot run here anyway. */
        const unsigned char native =
            __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB;
        if (head[EI_DATA] == native)
            kind = scan_phdrs(fd, head, interp, interp_len);
    }
    close(fd);
    return kind;
}
