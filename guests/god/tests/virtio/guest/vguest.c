/* Virtio test guest: finds virtio-mmio devices from `virtio_mmio.device=` command-line
   tokens (god's table; QEMU microvm writes the same ones), exercises virtio-blk, then runs a
   vsock echo service and optionally one guest-initiated connection.

   All of it runs in ring 0, which PVM emulates at ~0.6 us per instruction, so it is built
   for few instructions: rings are polled while there is work (VRING_AVAIL_F_NO_INTERRUPT
   set) and the guest halts when idle (see idle()), no copies (an echoed packet goes back
   out from the receive buffer it came in), 32-bit protected mode with paging off (PVH
   entry state, nothing to set up). It checks itself: a receive buffer posted twice or
   returned unposted prints "VGUEST BUG" and exits with status 9.
   Command line: echo_port=N (default 1024) hello_port=N (connect to the host) blk_seed=N
   idle_spins=N (idle loop passes before halting, default 0) spin=1 (never halt). */
typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32;
typedef unsigned long long u64;

#define barrier() __asm__ volatile("" ::: "memory")
static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
#define R32(a) (*(volatile u32 *)(a))

static void putc(char c) { while (!(inb(0x3fd) & 0x20)) {} outb(0x3f8, c); }
static void puts(const char *s) { while (*s) putc(*s++); }
static void putu(u32 v) { char b[12]; int i = 0; do { b[i++] = '0' + v % 10; v /= 10; } while (v); while (i) putc(b[--i]); }
static void putx(u32 v) { puts("0x"); for (int i = 28; i >= 0; i -= 4) putc("0123456789abcdef"[(v >> i) & 15]); }
static void exit_guest(u8 code) { outb(0xf4, code); for (;;) __asm__ volatile("hlt"); }
static void *memset(void *d, int c, u32 n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
static void *memcpy(void *d, const void *s, u32 n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }
static u32 fnv(const u8 *p, u32 n, u32 h) { while (n--) { h ^= *p++; h *= 16777619u; } return h; }

/* ---- command line ---------------------------------------------------------------- */
static const char *cmdline = "";
static int starts(const char *s, const char *p) { while (*p) if (*s++ != *p++) return 0; return 1; }
static u64 num(const char **sp) {       /* decimal or 0x hex, optional K/M suffix */
    const char *s = *sp; u64 v = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        for (s += 2;; s++) {
            int d = (*s >= '0' && *s <= '9') ? *s - '0' : (*s >= 'a' && *s <= 'f') ? *s - 'a' + 10
                  : (*s >= 'A' && *s <= 'F') ? *s - 'A' + 10 : -1;
            if (d < 0) break;
            v = (v << 4) | (u64)d;
        }
    } else while (*s >= '0' && *s <= '9') v = v * 10 + (u64)(*s++ - '0');
    if (*s == 'K' || *s == 'k') { v <<= 10; s++; } else if (*s == 'M' || *s == 'm') { v <<= 20; s++; }
    *sp = s; return v;
}
static u32 param(const char *name, u32 dflt) {
    for (const char *s = cmdline; *s; s++)
        if ((s == cmdline || s[-1] == ' ') && starts(s, name)) {
            while (*s && *s != '=') s++;
            if (*s == '=') { s++; return (u32)num(&s); }
        }
    return dflt;
}

/* ---- virtio-mmio ------------------------------------------------------------------- */
struct desc { u64 addr; u32 len; u16 flags, next; };
struct vq {
    u32 size; struct desc *desc; volatile u16 *avail; volatile u8 *used;
    u16 avail_idx, used_seen; u32 base; u32 qi;
};
#define NDEV 8
static u32 dev_base[NDEV], dev_irq[NDEV]; static int ndev;

static void find_devices(void) {
    for (const char *s = cmdline; *s; s++) {
        if (!starts(s, "virtio_mmio.device=")) continue;
        s += 19; num(&s);
        if (*s != '@') continue;
        s++;
        u32 base = (u32)num(&s), irq = 0xff;
        if (*s == ':') { s++; irq = (u32)num(&s); }
        if (ndev < NDEV) { dev_base[ndev] = base; dev_irq[ndev++] = irq; }
        s--;
    }
    if (!ndev)  /* no table: look at QEMU microvm's transports */
        for (u32 a = 0xfeb00000; a < 0xfeb00000 + 32 * 512; a += 512)
            if (R32(a) == 0x74726976 && R32(a + 8) && ndev < NDEV) { dev_base[ndev] = a; dev_irq[ndev++] = 0xff; }
}

/* Reset, negotiate VIRTIO_F_VERSION_1 (+ extra low bits), return 0 on success. */
static int vio_init(u32 b, u32 want_lo) {
    if (R32(b) != 0x74726976 || R32(b + 4) != 2) return -1;
    R32(b + 0x70) = 0; R32(b + 0x70) = 1; R32(b + 0x70) = 3;
    R32(b + 0x14) = 0; u32 lo = R32(b + 0x10) & want_lo;
    R32(b + 0x24) = 0; R32(b + 0x20) = lo;
    R32(b + 0x24) = 1; R32(b + 0x20) = 1;           /* VIRTIO_F_VERSION_1 */
    R32(b + 0x70) = 0xb;
    return (R32(b + 0x70) & 8) ? 0 : -2;
}
static void vq_setup(struct vq *q, u32 b, u32 qi, u32 size, void *mem) {
    u8 *m = mem;
    q->base = b; q->qi = qi; q->size = size;
    q->desc = (struct desc *)m;
    q->avail = (volatile u16 *)(m + 16 * size);
    q->used = (volatile u8 *)(m + ((16 * size + 6 + 2 * size + 4095) & ~4095u));
    q->avail[0] = 1;                                  /* VRING_AVAIL_F_NO_INTERRUPT: we poll */
    R32(b + 0x30) = qi;
    R32(b + 0x38) = size;
    R32(b + 0x80) = (u32)q->desc; R32(b + 0x84) = 0;
    R32(b + 0x90) = (u32)q->avail; R32(b + 0x94) = 0;
    R32(b + 0xa0) = (u32)q->used; R32(b + 0xa4) = 0;
    R32(b + 0x44) = 1;
}
#define VQ_MEM(size) (((16 * (size) + 6 + 2 * (size) + 4095) & ~4095u) + 6 + 8 * (size))
static void vq_post(struct vq *q, u16 head) {
    q->avail[2 + (q->avail_idx % q->size)] = head;
    barrier();
    q->avail[1] = ++q->avail_idx;
}
/* Full barrier without SSE (mfence is SSE2): our index store must be visible before we
   read the device's VRING_USED_F_NO_NOTIFY, or both sides could miss each other. */
static inline void mb(void) { __asm__ volatile("lock; addl $0, (%%esp)" ::: "memory"); }
static void vq_kick(struct vq *q) {
    mb();
    if (*(volatile u16 *)q->used & 1) return;     /* the device polls this ring right now */
    R32(q->base + 0x50) = q->qi;
}
/* Next used element: returns 1 and fills id/len, or 0. */
static int vq_used(struct vq *q, u32 *id, u32 *len) {
    volatile u16 *uidx = (volatile u16 *)(q->used + 2);
    if (*uidx == q->used_seen) return 0;
    barrier();
    volatile u32 *e = (volatile u32 *)(q->used + 4 + 8 * (q->used_seen % q->size));
    *id = e[0]; *len = e[1];
    q->used_seen++;
    return 1;
}

/* ---- virtio-blk ---------------------------------------------------------------------- */
static u8 blkq_mem[VQ_MEM(8)] __attribute__((aligned(4096)));
static u8 sect[4096] __attribute__((aligned(16)));
static struct { u32 type, rsv; u64 sector; } breq;
static volatile u8 bstatus;

static int blk_rw(struct vq *q, u32 type, u64 sector, void *buf, u32 len) {
    q->desc[0] = (struct desc){ (u32)&breq, 16, 1, 1 };
    breq.type = type; breq.rsv = 0; breq.sector = sector;
    int n = 1;
    if (len) { q->desc[1] = (struct desc){ (u32)buf, len, (u16)(1 | (type == 1 ? 0 : 2)), 2 }; n = 2; }
    q->desc[n - 1].next = (u16)n;
    q->desc[n] = (struct desc){ (u32)&bstatus, 1, 2, 0 };
    bstatus = 0xff;
    vq_post(q, 0); vq_kick(q);
    u32 id, l;
    for (u32 spin = 0; !vq_used(q, &id, &l); spin++) if (spin > 50000000) return -1;
    return bstatus;
}

static void blk_test(u32 b) {
    static struct vq q;
    u32 f = 0;
    R32(b + 0x14) = 0; f = R32(b + 0x10);
    if (vio_init(b, 1u << 5) < 0) { puts("BLK init failed\n"); return; }
    vq_setup(&q, b, 0, 8, blkq_mem);
    R32(b + 0x70) = 0xf;
    u32 cap = R32(b + 0x100);
    puts("BLK capacity="); putu(cap); puts(f & (1u << 5) ? " ro" : " rw");
    /* Read 8 sectors the host prepared at sector 0 and hash them. */
    int st = blk_rw(&q, 0, 0, sect, 4096);
    puts(" read="); putu((u32)st); puts(" readsum="); putx(fnv(sect, 4096, 2166136261u));
    /* Write a pattern at sector 8 (host verifies the file), read it back, compare. */
    u32 seed = param("blk_seed", 1);
    for (u32 i = 0; i < 4096; i++) sect[i] = (u8)(seed + i * 7 + (i >> 9));
    u32 h = fnv(sect, 4096, 2166136261u);
    st = blk_rw(&q, 1, 8, sect, 4096);
    puts(" write="); putu((u32)st);
    memset(sect, 0, 4096);
    int st2 = blk_rw(&q, 0, 8, sect, 4096);
    puts(" reread="); putu((u32)st2);
    puts(fnv(sect, 4096, 2166136261u) == h ? " match" : " MISMATCH");
    puts(" writesum="); putx(h);
    puts(" flush="); putu((u32)blk_rw(&q, 4, 0, 0, 0));
    memset(sect, 0, 32);
    st = blk_rw(&q, 8, 0, sect, 20);
    sect[20] = 0;
    puts(" id="); puts((char *)sect);
    puts(" past_end="); putu((u32)blk_rw(&q, 0, cap, sect, 512));
    puts("\n");
}

/* ---- idling: HLT until the device interrupts (god: IRQ known from the table, < 16) ----
   A spinning vCPU costs a whole host core and, on a busy host, steals it from the device
   thread it waits for. So after a short spin the guest re-enables used-buffer interrupts
   (clears VRING_AVAIL_F_NO_INTERRUPT), re-checks the rings and halts. The PIT at 100 Hz is
   the backstop that bounds any missed wakeup to 10 ms. The main loop does the work and
   acknowledges the virtio interrupt.
   PVM's ring-0 emulator cannot execute a 32-bit IRET, so a handler never returns: it
   sends EOI and unwinds to the end of idle_hlt(), the only place interrupts are enabled. */
extern char irq_stub[], irq_stub_slave[];
void idle_hlt(void);
__asm__(".globl idle_hlt\nidle_hlt: push %ebp; push %ebx; push %esi; push %edi\n"
        "  mov %esp, idle_esp\n  sti\n  hlt\n  cli\n"
        "idle_back: pop %edi; pop %esi; pop %ebx; pop %ebp; ret\n"
        ".globl tick_stub\ntick_stub: mov $0x20, %al; out %al, $0x20; mov idle_esp, %esp; jmp idle_back\n"
        ".globl irq_stub\nirq_stub: movl $1, woke; mov $0x20, %al; out %al, $0x20;"
        " mov idle_esp, %esp; jmp idle_back\n"
        ".globl irq_stub_slave\nirq_stub_slave: movl $1, woke; mov $0x20, %al; out %al, $0xa0;"
        " out %al, $0x20; mov idle_esp, %esp; jmp idle_back\n");
u32 idle_esp, woke;          /* woke: the device (not the PIT tick) ended the halt */
extern char tick_stub[];
static u32 idt[2 * 48] __attribute__((aligned(8)));
static int irq_ready;
static void irq_setup(int irq) {
    u16 cs; __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    for (int v = 0x20; v < 0x30; v++) {
        u32 a = (u32)(v == 0x20 ? tick_stub : v >= 0x28 ? irq_stub_slave : irq_stub);
        idt[2 * v] = (a & 0xffff) | ((u32)cs << 16);
        idt[2 * v + 1] = (a & 0xffff0000) | 0x8e00;
    }
    struct __attribute__((packed)) { u16 limit; u32 base; } d = { sizeof idt - 1, (u32)idt };
    __asm__ volatile("lidt %0" :: "m"(d));
    outb(0x20, 0x11); outb(0xa0, 0x11); outb(0x21, 0x20); outb(0xa1, 0x28);
    outb(0x21, 0x04); outb(0xa1, 0x02); outb(0x21, 0x01); outb(0xa1, 0x01);
    u16 mask = (u16)~(1u | (1u << irq) | (irq >= 8 ? 4u : 0u));
    outb(0x21, (u8)mask); outb(0xa1, (u8)(mask >> 8));
    outb(0x43, 0x34); outb(0x40, 11932 & 0xff); outb(0x40, 11932 >> 8);   /* 100 Hz */
    irq_ready = 1;
}

/* ---- virtio-vsock ---------------------------------------------------------------------- */
struct hdr { u64 src_cid, dst_cid; u32 src_port, dst_port, len; u16 type, op; u32 flags, buf_alloc, fwd_cnt; } __attribute__((packed));
enum { REQUEST = 1, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST };
#define NRX 64
#define RXSZ (32 * 1024)
#define NCTL 64
#define RXQN 64
#define TXQN 128
#define NCONN 80
#define BUF_ALLOC (256 * 1024)
static u8 rxbuf[NRX][RXSZ] __attribute__((aligned(16)));
struct ctlbuf { struct hdr h; char data[20]; };   /* a header and a short payload */
static struct ctlbuf ctl[NCTL];
static u8 ctl_busy[NCTL];
static u8 rx_posted[NRX];            /* self-check: a buffer is never posted twice */
static void rx_post_checked(u32 id);
static u8 rxq_mem[VQ_MEM(RXQN)] __attribute__((aligned(4096)));
static u8 txq_mem[VQ_MEM(TXQN)] __attribute__((aligned(4096)));
static struct vq rxq, txq;
static u64 my_cid;
struct conn { u32 used, lport, pport, peer_alloc, peer_fwd, tx_cnt, fwd_cnt, asked, closing; };
static struct conn conns[NCONN];
static u16 pend[NRX]; static u32 pend_n;       /* echoes waiting for credit (rx buffer ids) */
static int tx_added, rx_added;
static u32 echo_port, hello_port, hello_state;  /* 0 none, 1 sent, 2 open, 3 refused */
static u32 echoed_bytes;

static struct conn *last;               /* one-entry cache: streams come in runs */
static struct conn *find(u32 lport, u32 pport) {
    if (last && last->used && last->lport == lport && last->pport == pport) return last;
    for (int i = 0; i < NCONN; i++)
        if (conns[i].used && conns[i].lport == lport && conns[i].pport == pport) return last = &conns[i];
    return 0;
}
static struct conn *newconn(u32 lport, u32 pport) {
    for (int i = 0; i < NCONN; i++)
        if (!conns[i].used) { conns[i] = (struct conn){ 1, lport, pport, 0, 0, 0, 0, 0, 0 }; return &conns[i]; }
    return 0;
}
static void fill(struct hdr *h, u32 lport, u32 pport, u16 op, u32 len, u32 flags, struct conn *c) {
    h->src_cid = my_cid; h->dst_cid = 2; h->src_port = lport; h->dst_port = pport;  /* ring 0: few stores */
    h->len = len; h->type = 1; h->op = op; h->flags = flags;
    h->buf_alloc = BUF_ALLOC; h->fwd_cnt = c ? c->fwd_cnt : 0;
}
static void tx_post(u16 id, void *buf, u32 len) {
    txq.desc[id] = (struct desc){ (u32)buf, len, 0, 0 };
    vq_post(&txq, id); tx_added = 1;
}
static struct hdr *ctl_get(void) {
    for (;;) {
        for (int i = 0; i < NCTL; i++) if (!ctl_busy[i]) { ctl_busy[i] = 1; return &ctl[i].h; }
        u32 id, l;                      /* all in flight: reclaim (the device is fast) */
        vq_kick(&txq);
        while (vq_used(&txq, &id, &l)) { if (id >= NRX) ctl_busy[id - NRX] = 0; else rx_post_checked(id); }
    }
}
static void send_ctl(u32 lport, u32 pport, u16 op, u32 flags, struct conn *c, const char *data) {
    struct hdr *h = ctl_get();
    u32 n = 0;
    struct ctlbuf *cb = (struct ctlbuf *)h;
    if (data) { while (data[n] && n < sizeof cb->data) n++; memcpy(cb->data, data, n); }
    fill(h, lport, pport, op, n, flags, c);
    tx_post((u16)(NRX + (cb - ctl)), h, sizeof *h + n);
}
static void rx_post_checked(u32 id) {
    if (id >= NRX || rx_posted[id]) { puts("VGUEST BUG: receive buffer "); putu(id); puts(" posted twice\n"); exit_guest(9); }
    rx_posted[id] = 1;
    vq_post(&rxq, (u16)id); rx_added = 1;
}
static void rx_repost(u32 id) { rx_post_checked(id); }

/* Try to echo rx buffer id back on its connection; 0 if it must wait for credit. */
static int echo(u32 id) {
    struct hdr *h = (struct hdr *)rxbuf[id];
    struct conn *c = find(h->dst_port, h->src_port);
    if (!c) { rx_repost(id); return 1; }
    u32 n = h->len;
    if (c->peer_alloc - (c->tx_cnt - c->peer_fwd) < n) {
        if (!c->asked) { c->asked = 1; send_ctl(c->lport, c->pport, CREDIT_REQUEST, 0, c, 0); }
        return 0;
    }
    c->tx_cnt += n; c->fwd_cnt += n; echoed_bytes += n;
    fill(h, c->lport, c->pport, RW, n, 0, c);
    tx_post((u16)id, h, sizeof *h + n);
    return 1;
}

/* Orderly close: RST once no echo of this connection is still waiting for credit. */
static void close_if_done(struct conn *c) {
    for (u32 k = 0; k < pend_n; k++) {
        struct hdr *h = (struct hdr *)rxbuf[pend[k]];
        if (h->dst_port == c->lport && h->src_port == c->pport) return;
    }
    send_ctl(c->lport, c->pport, RST, 0, c, 0);
    c->used = 0;
}

static void on_rx(u32 id) {
    struct hdr *h = (struct hdr *)rxbuf[id];
    if (h->dst_cid != my_cid || h->type != 1) { rx_repost(id); return; }
    struct conn *c = find(h->dst_port, h->src_port);
    if (c) { c->peer_alloc = h->buf_alloc; c->peer_fwd = h->fwd_cnt; c->asked = 0; }
    switch (h->op) {
    case REQUEST:
        if (!c && h->dst_port == echo_port && (c = newconn(h->dst_port, h->src_port))) {
            c->peer_alloc = h->buf_alloc; c->peer_fwd = h->fwd_cnt;
            send_ctl(c->lport, c->pport, RESPONSE, 0, c, 0);
        } else send_ctl(h->dst_port, h->src_port, RST, 0, 0, 0);
        break;
    case RESPONSE:
        if (c && hello_state == 1 && c->pport == hello_port) {
            hello_state = 2;
            puts("VSOCK hello connected\n");
            send_ctl(c->lport, c->pport, RW, 0, c, "HELLO\n");
            c->tx_cnt += 6;
        }
        break;
    case RW:
        if (c) {
            if (pend_n || !echo(id)) pend[pend_n++] = (u16)id;   /* keep order behind waiters */
            return;
        }
        send_ctl(h->dst_port, h->src_port, RST, 0, 0, 0);
        break;
    case SHUTDOWN:                       /* peer is done: we are too once echoes are out */
        if (c) { c->closing = 1; close_if_done(c); }
        break;
    case RST:
        if (c) {
            if (hello_state == 1 && c->pport == hello_port) { hello_state = 3; puts("VSOCK hello refused\n"); }
            c->used = 0;
        } else if (hello_state == 1 && h->src_port == hello_port) { hello_state = 3; puts("VSOCK hello refused\n"); }
        break;
    case CREDIT_REQUEST:
        if (c) send_ctl(c->lport, c->pport, CREDIT_UPDATE, 0, c, 0);
        break;
    }
    rx_repost(id);
}

static int used_pending(struct vq *q) { return *(volatile u16 *)(q->used + 2) != q->used_seen; }
static void idle(u32 b) {
    rxq.avail[0] = 0; txq.avail[0] = 0;      /* interrupts wanted again */
    mb();
    /* A PIT tick with nothing to do goes straight back to sleep: no spin, no exit. */
    while (!used_pending(&rxq) && !used_pending(&txq) && !woke) idle_hlt();
    rxq.avail[0] = 1; txq.avail[0] = 1;
    if (woke) { woke = 0; R32(b + 0x64) = 3; }   /* InterruptACK: lower the level line */
}

static void vsock_run(u32 b, u32 irq) {
    if (vio_init(b, 0) < 0) { puts("VSOCK init failed\n"); exit_guest(3); }
    my_cid = R32(b + 0x100) | ((u64)R32(b + 0x104) << 32);
    vq_setup(&rxq, b, 0, RXQN, rxq_mem);
    vq_setup(&txq, b, 1, TXQN, txq_mem);
    R32(b + 0x70) = 0xf;
    for (u32 i = 0; i < NRX; i++) {
        rxq.desc[i] = (struct desc){ (u32)rxbuf[i], RXSZ, 2, 0 };
        rx_post_checked(i);
    }
    vq_kick(&rxq);
    echo_port = param("echo_port", 1024);
    hello_port = param("hello_port", 0);
    puts("VSOCK cid="); putu((u32)my_cid); puts(" echo_port="); putu(echo_port); puts("\n");
    if (hello_port) {
        struct conn *c = newconn(40000, hello_port);
        hello_state = 1;
        send_ctl(c->lport, c->pport, REQUEST, 0, c, 0);
        vq_kick(&txq);
    }
    if (irq < 16 && !param("spin", 0)) irq_setup((int)irq);
    puts(irq_ready ? "VSOCK idle=hlt\n" : "VSOCK idle=spin\n");
    puts("VGUEST READY\n");
    u32 spins = 0, idle_spins = param("idle_spins", 0);
    for (;;) {
        u32 id, len;
        tx_added = rx_added = 0;
        while (vq_used(&txq, &id, &len)) {
            if (id >= NRX) ctl_busy[id - NRX] = 0;
            else rx_repost(id);        /* an echoed receive buffer is free again */
        }
        while (vq_used(&rxq, &id, &len)) {
            if (id >= NRX || !rx_posted[id]) { puts("VGUEST BUG: device returned receive buffer "); putu(id); puts("\n"); exit_guest(9); }
            rx_posted[id] = 0;
            on_rx(id);
        }
        if (pend_n) {                  /* credit may have arrived */
            u32 k = 0;
            while (k < pend_n && echo(pend[k])) k++;
            for (u32 j = k; j < pend_n; j++) pend[j - k] = pend[j];
            pend_n -= k;
            for (int i = 0; i < NCONN; i++) if (conns[i].used && conns[i].closing) close_if_done(&conns[i]);
        }
        if (tx_added) vq_kick(&txq);
        if (rx_added) vq_kick(&rxq);
        if (tx_added || rx_added || pend_n) spins = 0;
        else if (irq_ready && ++spins > idle_spins) { idle(b); spins = 0; }
        else __asm__ volatile("pause");
    }
}

u32 kmain(u32 start_info) {
    if (R32(start_info) == 0x336ec578 && R32(start_info + 24))
        cmdline = (const char *)R32(start_info + 24);
    puts("VGUEST cmdline: "); puts(cmdline); puts("\n");
    find_devices();
    u32 vsock = 0, vsock_irq = 0xff;
    for (int i = 0; i < ndev; i++) {
        u32 id = R32(dev_base[i] + 8);
        puts("VIRTIO dev "); putx(dev_base[i]); puts(" id="); putu(id); puts("\n");
        if (id == 2) blk_test(dev_base[i]);
        if (id == 19 && !vsock) { vsock = dev_base[i]; vsock_irq = dev_irq[i]; }
    }
    if (!vsock) { puts("VGUEST DONE\n"); return 0; }
    vsock_run(vsock, vsock_irq);
    return 1;
}
