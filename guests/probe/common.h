/* What the x86 probe and the arm64 probe (aarch64/) share: fixed-width types and the reply
 * text helpers of fmt.c. No architecture code here. */
#ifndef PROBE_COMMON_H
#define PROBE_COMMON_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

/* ---------------------------------------------------------------- fmt.c */
struct out {
    char buf[512];
    int n;
};
void o_str(struct out *o, const char *s);
void o_chr(struct out *o, char c);
void o_dec(struct out *o, u64 v);
void o_hex(struct out *o, u64 v);
void o_kv_dec(struct out *o, const char *k, u64 v);
void o_kv_hex(struct out *o, const char *k, u64 v);
void o_kv_str(struct out *o, const char *k, const char *v);
int streq(const char *a, const char *b);
int parse_u64(const char *s, u64 *out);
void log_kv(const char *prefix, const char *k1, u64 v1, const char *k2, u64 v2);

/* each architecture's console driver */
void uart_write(const char *s, int n);

#endif
