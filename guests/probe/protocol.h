/* The agent protocol's guest side (docs/agent-protocol.md), shared by the x86 probe and the
 * arm64 probe (aarch64/): request parsing, arguments, replies and the console loop. What a
 * command does, and how a request reaches another vCPU, is each architecture's agent.c.
 *
 *   request  @><id> <cmd> [key=value ...] *<cs>
 *   reply    @@<id> ok|err|go ... *<cs>      cs = sum of the line's bytes before " *", mod 256
 *
 * The error codes are pytest_vmm/agent/protocol.py's ErrorCode (tests/agent/test_agent_sync.py
 * keeps them in step). */
#ifndef PROBE_PROTOCOL_H
#define PROBE_PROTOCOL_H

#include "common.h"

#define MAXARGS 12
#define E_FRAME 1
#define E_UNKNOWN 2
#define E_ARG 3
#define E_WIDTH 4
#define E_FAULT 5
#define E_TIMEOUT 6
#define E_NOCPU 7
#define E_UNSUPPORTED 8

struct req {
    char *id;
    char *cmd;
    int nargs;
    char *key[MAXARGS];
    char *val[MAXARGS];
};

struct ctx {
    struct req *r;
    struct out *o;  /* the reply body after "@@<id> ok" */
    int cpu;        /* CPU running the handler */
    const char *err_text;
    u64 err_val;
    int has_err_val;
};

typedef int (*handler_fn)(struct ctx *c);

struct command {
    const char *name;
    handler_fn fn;
    u8 bsp_only; /* talks to the host mid-command or drives BSP-routed lines */
};

/* ---------------------------------------------------------------- arguments */
const char *arg_str(struct ctx *c, const char *k);
/* 0: ok; else E_ARG with the key named in the error text */
int arg_u64(struct ctx *c, const char *k, u64 *v, int required, u64 dflt, u64 max);
#define ARG(name, key, req, dflt, max)                            \
    u64 name;                                                     \
    do {                                                          \
        int e_ = arg_u64(c, key, &name, req, dflt, max);          \
        if (e_)                                                   \
            return e_;                                            \
    } while (0)
int hexval(char ch); /* -1 if ch is not a hex digit */

/* ---------------------------------------------------------------- replies */
void send_frame(const char *id, const char *status, struct out *body);
/* interim "go" to the request being handled: the guest is ready for the host's part */
void send_go(struct out *body);
void agent_banner(void);

/* ---------------------------------------------------------------- the loop */
/* Reads console lines for ever and answers each request with one of ``commands``. */
void agent_serve(const struct command *commands, unsigned ncommands);

/* ---------------------------------------------------------------- each architecture's part */
int rx_getc(void);                     /* -1 when nothing is buffered */
void agent_wait_for_rx(void);          /* sleep until a console interrupt may have come */
int agent_cpu_state(u64 cpu);          /* -1 no such CPU, 0 not online, 1 online */
int agent_run_on(int cpu, const struct command *cmd, struct ctx *c);

#endif
