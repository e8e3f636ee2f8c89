/* init.c - PID 1 of the emulated machine in tests/avx512_emu/run.sh: reports what the CPU offers,
 * runs /test_infer and, when the initramfs has it, /test_conv_fast --wide-only, reports each exit
 * status, and powers the machine off.
 *
 * Linked statically; nothing else is in the initramfs but the tests and their libraries. The
 * "avx512emu:" lines are what run.sh parses from the serial console.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

int main(void) {
    mkdir("/proc", 0555);
    mount("proc", "/proc", "proc", 0, NULL);
    __builtin_cpu_init();
    printf("avx512emu: cpu avx2 %d fma %d avx512f %d\n", !!__builtin_cpu_supports("avx2"),
           !!__builtin_cpu_supports("fma"), !!__builtin_cpu_supports("avx512f"));
    fflush(stdout);
    char *tests[][3] = {{"/test_infer", ".", NULL}, {"/test_conv_fast", "--wide-only", NULL}};
    for (int t = 0; t < 2; t++) {
        if (access(tests[t][0], X_OK) != 0)
            continue;
        int status = 255;
        pid_t pid = fork();
        if (pid == 0) {
            char *envp[] = {"PATH=/", NULL};
            execve(tests[t][0], tests[t], envp);
            perror("execve");
            _exit(127);
        }
        int st = 0;
        if (pid > 0 && waitpid(pid, &st, 0) == pid)
            status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        printf("avx512emu: %s exit status %d\n", tests[t][0] + 1, status);
        fflush(stdout);
    }
    /* the serial console drains slowly under emulation: power off only once it is empty */
    tcdrain(STDOUT_FILENO);
    sleep(1);
    sync();
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}
