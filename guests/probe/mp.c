/* Intel MP specification 1.4 tables: how many CPUs the platform has and which IOAPIC pin each
 * ISA IRQ reaches. Both VMMs describe their wiring there (QEMU's firmware: IRQ0 -> pin 2, god:
 * IRQ n -> pin n), so the probe follows the table instead of assuming one convention. */
#include "probe.h"

struct mp_info mp;

static int sum_ok(const u8 *p, u32 n) {
    u8 s = 0;
    for (u32 i = 0; i < n; i++)
        s = (u8)(s + p[i]);
    return s == 0;
}

/* 16-byte steps: a few thousand probes at most (cheap even at PVM's ring-0 speed) */
static const u8 *scan(u64 base, u64 len) {
    for (u64 a = base; a + 16 <= base + len; a += 16)
        if (*(volatile u32 *)a == 0x5F504D5F && sum_ok((const u8 *)a, 16)) /* "_MP_" */
            return (const u8 *)a;
    return 0;
}

static u16 rd16(const u8 *p) { return (u16)(p[0] | p[1] << 8); }
static u32 rd32(const u8 *p) { return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24; }

void mp_parse(void) {
    for (int i = 0; i < 16; i++)
        mp.isa_pin[i] = 0xFF;
    u64 ebda = (u64)(*(volatile u16 *)0x40EULL) << 4;
    const u8 *f = 0;
    if (ebda >= 0x80000 && ebda < 0xA0000)
        f = scan(ebda, 1024);
    if (!f)
        f = scan(0x9FC00, 1024);
    if (!f)
        f = scan(0xF0000, 0x10000);
    if (!f)
        return;
    u32 cfg = rd32(f + 4);
    if (!cfg || f[11] || cfg >= 0x100000) /* f[11]: a "default configuration" has no table */
        return;
    const u8 *t = (const u8 *)(u64)cfg;
    if (rd32(t) != 0x504D4350) /* "PCMP" */
        return;
    u32 len = rd16(t + 4);
    u32 count = rd16(t + 0x22);
    const u8 *end = t + len;
    int isa_bus = -1, cpus = 0;
    /* pass 1: processors and the ISA bus id; pass 2: ISA interrupt assignments */
    for (int pass = 0; pass < 2; pass++) {
        const u8 *e = t + 0x2C;
        /* qboot (QEMU microvm) leaves the entry count 0: the table length bounds the walk */
        for (u32 i = 0; (count == 0 || i < count) && e + 8 <= end; i++) {
            u8 type = e[0];
            if (type == 0) {
                if (pass == 0 && (e[3] & 1))
                    cpus++;
                e += 20;
                continue;
            }
            if (type > 4)
                return; /* not a table we understand: trust none of it */
            if (pass == 0 && type == 1 && e[2] == 'I' && e[3] == 'S' && e[4] == 'A')
                isa_bus = e[1];
            if (pass == 1 && type == 3 && e[1] == 0 && e[4] == isa_bus && e[5] < 16 && mp.isa_pin[e[5]] == 0xFF)
                mp.isa_pin[e[5]] = e[7];
            e += 8;
        }
    }
    mp.found = 1;
    mp.cpus = cpus;
}
