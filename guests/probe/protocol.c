/* The agent protocol's framing (protocol.h): arch-neutral, shared by both probes. */
#include "protocol.h"

void *memcpy(void *d, const void *s, unsigned long n);

static const char hex_digits[] = "0123456789abcdef";

/* ------------------------------------------------------------------ arguments */
const char *arg_str(struct ctx *c, const char *k) {
    for (int i = 0; i < c->r->nargs; i++)
        if (streq(c->r->key[i], k))
            return c->r->val[i];
    return 0;
}

int arg_u64(struct ctx *c, const char *k, u64 *v, int required, u64 dflt, u64 max) {
    const char *s = arg_str(c, k);
    if (!s) {
        if (required) {
            c->err_text = k;
            return E_ARG;
        }
        *v = dflt;
        return 0;
    }
    if (parse_u64(s, v) || *v > max) {
        c->err_text = k;
        return E_ARG;
    }
    return 0;
}

int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* ------------------------------------------------------------------ replies */
static u8 sum8(const char *s, int n) {
    u32 sum = 0;
    for (int i = 0; i < n; i++)
        sum += (u8)s[i];
    return (u8)sum;
}

/* " *cs\r\n" after the o->n bytes already in o, then onto the console */
static void seal_and_send(struct out *o) {
    u8 cs = sum8(o->buf, o->n);
    /* written directly: o_chr keeps these 8 bytes free for exactly this */
    o->buf[o->n++] = ' ';
    o->buf[o->n++] = '*';
    o->buf[o->n++] = hex_digits[cs >> 4];
    o->buf[o->n++] = hex_digits[cs & 15];
    o->buf[o->n++] = '\r';
    o->buf[o->n++] = '\n';
    uart_write(o->buf, o->n);
}

/* "@@<id> <status>" + body */
void send_frame(const char *id, const char *status, struct out *body) {
    struct out o;
    o.n = 0;
    o_str(&o, "@@");
    o_str(&o, id);
    o_chr(&o, ' ');
    o_str(&o, status);
    for (int i = 0; i < body->n; i++)
        o_chr(&o, body->buf[i]);
    seal_and_send(&o);
}

static void send_error(const char *id, int code, const char *text, u64 val, int has_val) {
    struct out b;
    b.n = 0;
    o_chr(&b, ' ');
    o_dec(&b, (u64)code);
    o_chr(&b, ' ');
    for (const char *t = text; *t; t++) /* an '@' could open a frame of its own on the host */
        o_chr(&b, *t == '@' ? '_' : *t);
    if (has_val) {
        o_chr(&b, ' ');
        o_hex(&b, val);
    }
    send_frame(id, "err", &b);
}

static const char *error_text(int code) {
    switch (code) {
    case E_FRAME: return "bad frame";
    case E_UNKNOWN: return "unknown command";
    case E_ARG: return "bad argument";
    case E_WIDTH: return "unsupported width";
    case E_FAULT: return "fault on access";
    case E_TIMEOUT: return "timeout";
    case E_NOCPU: return "no such cpu";
    default: return "unsupported";
    }
}

static char *id_of_current;

void send_go(struct out *body) { send_frame(id_of_current, "go", body); }

void agent_banner(void) {
    struct out b;
    b.n = 0;
    o_str(&b, "@@ready proto=1 name=probe");
    seal_and_send(&b);
}

/* ------------------------------------------------------------------ line handling */
static void handle_line(char *line, int len, const struct command *commands, unsigned ncommands) {
    int start = -1;
    for (int i = 0; i + 1 < len; i++)
        if (line[i] == '@' && line[i + 1] == '>')
            start = i; /* the last prefix wins: garbage before a request is dropped */
    if (start < 0)
        return;
    char *s = line + start;
    int n = len - start;
    int star = -1;
    for (int i = n - 2; i >= 0; i--)
        if (s[i] == ' ' && s[i + 1] == '*') {
            star = i;
            break;
        }
    /* the id: digits after "@>" */
    int p = 2;
    while (p < n && s[p] >= '0' && s[p] <= '9')
        p++;
    if (p == 2 || p > 11 || p >= n || s[p] != ' ')
        return; /* no usable id: nothing to answer to */
    char id[12];
    memcpy(id, s + 2, (unsigned long)(p - 2));
    id[p - 2] = 0;
    if (star < p) {
        send_error(id, E_FRAME, "missing checksum", 0, 0);
        return;
    }
    u64 want;
    char hexbuf[5] = {'0', 'x', 0, 0, 0};
    if (n - star - 2 == 2) {
        hexbuf[2] = s[star + 2];
        hexbuf[3] = s[star + 3];
    }
    if (!hexbuf[2] || parse_u64(hexbuf, &want) || want != sum8(s, star)) {
        send_error(id, E_FRAME, "bad checksum", 0, 0);
        return;
    }
    /* tokens between the id and the checksum */
    s[star] = 0;
    struct req r;
    r.id = id;
    r.cmd = 0;
    r.nargs = 0;
    char *t = s + p;
    int cpu = 0;
    for (;;) {
        while (*t == ' ')
            t++;
        if (!*t)
            break;
        char *w = t;
        while (*t && *t != ' ')
            t++;
        if (*t)
            *t++ = 0;
        if (!r.cmd) {
            r.cmd = w;
            continue;
        }
        char *eq = w;
        while (*eq && *eq != '=')
            eq++;
        if (!*eq || eq == w || r.nargs == MAXARGS) {
            send_error(id, E_ARG, "arguments are key=value", 0, 0);
            return;
        }
        *eq = 0;
        if (streq(w, "cpu")) {
            u64 v;
            if (parse_u64(eq + 1, &v) || agent_cpu_state(v) < 0) {
                send_error(id, E_NOCPU, "no such cpu", 0, 0);
                return;
            }
            cpu = (int)v;
            continue;
        }
        r.key[r.nargs] = w;
        r.val[r.nargs] = eq + 1;
        r.nargs++;
    }
    if (!r.cmd) {
        send_error(id, E_FRAME, "missing command", 0, 0);
        return;
    }
    const struct command *cmd = 0;
    for (unsigned i = 0; i < ncommands; i++)
        if (streq(commands[i].name, r.cmd))
            cmd = &commands[i];
    if (!cmd) {
        send_error(id, E_UNKNOWN, "unknown command", 0, 0);
        return;
    }
    if (agent_cpu_state((u64)cpu) != 1) {
        send_error(id, E_NOCPU, "cpu is not online", 0, 0);
        return;
    }
    if (cpu != 0 && cmd->bsp_only) {
        send_error(id, E_ARG, "this command runs on cpu 0 only", 0, 0);
        return;
    }
    struct out body;
    body.n = 0;
    struct ctx c = {&r, &body, cpu, 0, 0, 0};
    id_of_current = id;
    int rc = agent_run_on(cpu, cmd, &c);
    id_of_current = 0;
    if (rc) {
        send_error(id, rc, c.err_text ? c.err_text : error_text(rc), c.err_val, c.has_err_val);
        return;
    }
    send_frame(id, "ok", &body);
}

void agent_serve(const struct command *commands, unsigned ncommands) {
    static char line[256];
    int len = 0, overflow = 0;
    for (;;) {
        int ch = rx_getc();
        if (ch < 0) {
            agent_wait_for_rx();
            continue;
        }
        if (ch == '\n' || ch == '\r') {
            if (len && !overflow)
                handle_line(line, len, commands, ncommands);
            len = 0;
            overflow = 0;
            continue;
        }
        if (len < (int)sizeof(line) - 1)
            line[len++] = (char)ch;
        else
            overflow = 1; /* too long for a request: dropped whole at its end */
    }
}
