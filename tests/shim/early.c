/* A library whose constructor runs before the shim's (listed after it in
 * LD_PRELOAD) and already uses sockets: those calls must pass straight
 * through, and the socket it leaves open is adopted as inherited. */
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int early_listener = -1;

__attribute__((constructor)) static void early_start(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 4)) {
        perror("early");
        return;
    }
    int extra = dup(fd);
    close(extra);
    early_listener = fd;
    char note[] = "early constructor ran\n";
    (void)!write(1, note, sizeof note - 1);
}
