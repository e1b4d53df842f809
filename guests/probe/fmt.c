/* Tiny text helpers: reply building and number parsing (no libc). */
#include "common.h"

void o_chr(struct out *o, char c) {
    if (o->n < (int)sizeof(o->buf) - 8) /* room kept for " *cs\r\n" */
        o->buf[o->n++] = c;
}

void o_str(struct out *o, const char *s) {
    while (*s)
        o_chr(o, *s++);
}

void o_dec(struct out *o, u64 v) {
    char t[20];
    int i = 0;
    do {
        t[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        o_chr(o, t[--i]);
}

void o_hex(struct out *o, u64 v) {
    static const char digits[] = "0123456789abcdef";
    int shift = 60;
    o_str(o, "0x");
    while (shift > 0 && !(v >> shift))
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        o_chr(o, digits[(v >> shift) & 0xF]);
}

void o_kv_dec(struct out *o, const char *k, u64 v) {
    o_chr(o, ' ');
    o_str(o, k);
    o_chr(o, '=');
    o_dec(o, v);
}

void o_kv_hex(struct out *o, const char *k, u64 v) {
    o_chr(o, ' ');
    o_str(o, k);
    o_chr(o, '=');
    o_hex(o, v);
}

void o_kv_str(struct out *o, const char *k, const char *v) {
    o_chr(o, ' ');
    o_str(o, k);
    o_chr(o, '=');
    o_str(o, v);
}

int streq(const char *a, const char *b) {
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* decimal or 0x-hex, unsigned, whole string; 0 on success */
int parse_u64(const char *s, u64 *out) {
    u64 v = 0;
    if (!*s)
        return -1;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        if (!*s)
            return -1;
        for (; *s; s++) {
            int d;
            if (*s >= '0' && *s <= '9') d = *s - '0';
            else if (*s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
            else if (*s >= 'A' && *s <= 'F') d = *s - 'A' + 10;
            else return -1;
            if (v >> 60)
                return -1;
            v = v << 4 | (u64)d;
        }
    } else {
        for (; *s; s++) {
            if (*s < '0' || *s > '9')
                return -1;
            u64 nv = v * 10 + (u64)(*s - '0');
            if (nv / 10 != v)
                return -1;
            v = nv;
        }
    }
    *out = v;
    return 0;
}

/* a guest log line: "<prefix> k1=v1 k2=v2" (hex) -- ignored by the host client */
void log_kv(const char *prefix, const char *k1, u64 v1, const char *k2, u64 v2) {
    struct out o;
    o.n = 0;
    o_str(&o, prefix);
    o_kv_hex(&o, k1, v1);
    o_kv_hex(&o, k2, v2);
    o_str(&o, "\r\n");
    uart_write(o.buf, o.n);
}
