/*
 * seccomp-run ALLOWFILE kill|eperm [mdwe] -- COMMAND [ARGS...]
 *
 * Runs COMMAND under an allow-list seccomp filter, the way systemd applies SystemCallFilter=
 * (x86_64 only): ALLOWFILE holds the allowed system call numbers, one per line; any other call
 * kills the process (kill, systemd's default action) or fails with EPERM (eperm, as
 * SystemCallErrorNumber=EPERM). `mdwe` adds MemoryDenyWriteExecute=yes's rules: mprotect and
 * pkey_mprotect with PROT_EXEC, and mmap with PROT_WRITE|PROT_EXEC, fail with EPERM.
 * Sets no_new_privs first, as NoNewPrivileges=yes (and any unprivileged filter) does.
 *
 * Used by test/cli/unit-sandbox.test.ts to run the daemon under the unit's own filter without
 * systemd as PID 1. Built at test time with the system's C compiler.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_RULES 4096
#define MAX_CALLS 1024

static struct sock_filter rules[MAX_RULES];
static unsigned short count;

static void add(struct sock_filter rule) {
  if (count >= MAX_RULES) {
    fprintf(stderr, "seccomp-run: filter too long\n");
    exit(125);
  }
  rules[count++] = rule;
}

static void load_nr(void) { add((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))); }
static void load_arg2(void) { add((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2]))); }
static void ret(unsigned int action) { add((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action)); }

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: seccomp-run ALLOWFILE kill|eperm [mdwe] -- COMMAND [ARGS...]\n");
    return 125;
  }
  FILE *in = fopen(argv[1], "r");
  if (in == NULL) {
    perror(argv[1]);
    return 125;
  }
  int calls[MAX_CALLS];
  int ncalls = 0;
  while (ncalls < MAX_CALLS && fscanf(in, "%d", &calls[ncalls]) == 1) ncalls++;
  fclose(in);
  unsigned int deny = strcmp(argv[2], "kill") == 0 ? SECCOMP_RET_KILL_PROCESS : (SECCOMP_RET_ERRNO | EPERM);
  int next = 3;
  int mdwe = strcmp(argv[next], "mdwe") == 0;
  if (mdwe) next++;
  if (next < argc && strcmp(argv[next], "--") == 0) next++;
  if (next >= argc) {
    fprintf(stderr, "seccomp-run: no command\n");
    return 125;
  }

  add((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  add((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  ret(SECCOMP_RET_KILL_PROCESS);
  load_nr();
  if (mdwe) {
    const int exec_protect[2] = { __NR_mprotect, __NR_pkey_mprotect };
    for (int i = 0; i < 2; i++) {
      add((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, exec_protect[i], 0, 4));
      load_arg2();
      add((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1));
      ret(SECCOMP_RET_ERRNO | EPERM);
      load_nr();
    }
    add((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 0, 5));
    load_arg2();
    add((struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC));
    add((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_WRITE | PROT_EXEC, 0, 1));
    ret(SECCOMP_RET_ERRNO | EPERM);
    load_nr();
  }
  for (int i = 0; i < ncalls; i++) {
    add((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)calls[i], 0, 1));
    ret(SECCOMP_RET_ALLOW);
  }
  ret(deny);

  struct sock_fprog prog = { .len = count, .filter = rules };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    perror("seccomp-run: PR_SET_NO_NEW_PRIVS");
    return 125;
  }
  if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    perror("seccomp-run: seccomp");
    return 125;
  }
  execvp(argv[next], argv + next);
  perror(argv[next]);
  return 127;
}
