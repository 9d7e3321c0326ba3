// cuda_emu.h: run unchanged CUDA C kernels (kernels/*.cu) on the CPU with g++.
//
// Each block's threads are cooperative fibers on one OS thread: a one-time makecontext per fiber
// stack, then _setjmp/_longjmp switches (~50 ns). __syncthreads() parks the calling fiber; the
// scheduler runs the block's fibers up to their next synchronisation point in one of four orders
// ("forward", "reverse", seeded "shuffle": every runnable thread to its next barrier or warp sync;
// "warp": one warp at a time, each to its next __syncthreads()), then opens the barrier once every
// live thread waits at the same one. A thread that exits while others wait, threads parked at
// different barriers, or a warp shuffle whose partner lanes never arrive are reported as errors
// (return code + message), never a hang. Blocks run one after another.
// See cuda_emu/README.md for what an emulated pass proves.
//
// Nothing here is active under nvcc/NVRTC: the same .cu keeps compiling for the GPU.
// Build flags: -std=c++17 -O2 -ffp-contract=off -fno-fast-math -U_FORTIFY_SOURCE (glibc's fortified
// longjmp aborts on jumps between stacks).
#pragma once
#if !defined(__CUDACC__) && !defined(__CUDACC_RTC__)

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <csetjmp>
#include <csignal>
#include <cstdarg>
#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUDA_EMU_ASAN 1
#else
#define CUDA_EMU_ASAN 0
#endif

#ifndef CUDA_EMU_STACK_SIZE            // bytes of stack per fiber (one per thread of a block)
#if CUDA_EMU_ASAN
#define CUDA_EMU_STACK_SIZE (512 * 1024)
#else
#define CUDA_EMU_STACK_SIZE (64 * 1024)
#endif
#endif
#ifndef CUDA_EMU_DYN_SMEM_MAX          // storage behind each `extern __shared__` array: EmuModule(smem_limit=...)
#error "CUDA_EMU_DYN_SMEM_MAX is set by cuda_emu.EmuModule (its smem_limit, cuda_emu.H100_SMEM_LIMIT by default)"
#endif
#define CUDA_EMU 1

// ---- CUDA keywords -------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __grid_constant__
// Static __shared__ variables become one copy per OS thread, shared by the block's fibers (cuda_emu
// appends CUDA_EMU_STATIC_SHARED(name) to each declaration so that every block sees them filled with
// 0xFF bytes); an `extern __shared__ T name[]` declaration binds to a definition that the generated
// code (cuda_emu/module.py) appends: CUDA_EMU_DYN_SMEM_MAX bytes, of which the launch may use shared_mem.
#define __shared__ thread_local

struct uint3 { unsigned int x, y, z; };
struct int3 { int x, y, z; };
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
struct int2 { int x, y; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }

namespace cuda_emu {

enum FiberState { RUNNABLE = 0, AT_BLOCK_BARRIER = 1, AT_WARP_BARRIER = 2, DONE = 3 };
enum Order { ORDER_FORWARD = 0, ORDER_REVERSE = 1, ORDER_SHUFFLE = 2, ORDER_WARP = 3 };

struct Fiber {
    jmp_buf ctx;            // where the fiber is parked (valid while it waits at a barrier)
    jmp_buf start;          // top of fiber_loop: jumping here starts a thread afresh
    char* stack_lo;         // usable stack [stack_lo, stack_lo + stack_size); guard page below
    size_t stack_size;
    int state;
    int started;            // 0 until the fiber first runs in this block (then it resumes from ctx)
    const char* site_file;  // barrier the fiber waits at
    int site_line;
    int site_phase;         // warp barriers: 0/1 for the two halves of a shuffle
    unsigned warp_mask;
    int pred;               // __syncthreads_count/and/or argument
    uint3 tid;
    unsigned linear;
    void* asan_fake;
};

struct LaunchCfg {                      // filled by the Python side (ctypes) or the sanitizer launcher
    unsigned grid[3], block[3];
    unsigned long long shared_mem;      // dynamic shared memory bytes requested
    unsigned long long shared_mem_cap;  // what the function attribute allows (checked again here)
    int order;                          // Order
    unsigned long long seed;
    int fill_shared;                    // fill shared memory with 0xFF bytes (NaN, -1) per block; guard zones
};

typedef void (*BodyFn)(void*);

// ---- per-OS-thread emulator state (inline variables: one definition across the program) --------
inline thread_local Fiber* g_cur = nullptr;
inline thread_local uint3 g_block_idx = {0, 0, 0};
inline thread_local dim3 g_block_dim;
inline thread_local dim3 g_grid_dim;
inline thread_local jmp_buf g_sched;
inline thread_local sigjmp_buf g_fault_env;
inline thread_local volatile int g_in_launch = 0;
inline thread_local volatile void* g_fault_addr = nullptr;
inline thread_local volatile int g_fault_sig = 0;
inline thread_local BodyFn g_body = nullptr;
inline thread_local void* g_body_ctx = nullptr;
inline thread_local Fiber* g_fibers = nullptr;   // pool, g_nfibers booted
inline thread_local unsigned g_nfibers = 0;
inline thread_local Fiber* g_boot = nullptr;
inline thread_local unsigned long long* g_slots = nullptr;  // warp shuffle publish slots (1024)
inline thread_local int g_bar_result = 0;
inline thread_local unsigned g_nthreads = 0;
inline thread_local void* g_sched_fake = nullptr;
inline thread_local const void* g_main_bottom = nullptr;
inline thread_local size_t g_main_size = 0;

// ---- fiber switching -----------------------------------------------------------------------------
// _setjmp returns twice: keep it in small noinline functions whose frames stay alive while parked.
static inline void asan_start_switch(void** fake, const void* bottom, size_t size) {
#if CUDA_EMU_ASAN
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void)fake; (void)bottom; (void)size;
#endif
}
static inline void asan_finish_switch(void* fake, const void** bottom, size_t* size) {
#if CUDA_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, bottom, size);
#else
    (void)fake; (void)bottom; (void)size;
#endif
}

__attribute__((noinline)) inline void fiber_park(Fiber* f) {   // fiber -> scheduler
    if (_setjmp(f->ctx) == 0) {
        asan_start_switch(&f->asan_fake, g_main_bottom, g_main_size);
        _longjmp(g_sched, 1);
    }
    asan_finish_switch(f->asan_fake, &g_main_bottom, &g_main_size);
}

__attribute__((noinline)) inline void sched_resume(Fiber* f, bool fresh) {  // scheduler -> fiber
    if (_setjmp(g_sched) == 0) {
        asan_start_switch(&g_sched_fake, f->stack_lo, f->stack_size);
        _longjmp(fresh ? f->start : f->ctx, 1);
    }
    asan_finish_switch(g_sched_fake, nullptr, nullptr);
}

__attribute__((noinline, noreturn)) inline void fiber_loop(Fiber* volatile self) {
    asan_finish_switch(nullptr, &g_main_bottom, &g_main_size);   // entered by setcontext at boot
    if (_setjmp(self->start) == 0) {                 // boot: remember this point, go back
        asan_start_switch(nullptr, g_main_bottom, g_main_size);
        _longjmp(g_sched, 1);
    }
    // started (again) for a new thread of a block
    Fiber* f = self;
    asan_finish_switch(nullptr, &g_main_bottom, &g_main_size);
    g_body(g_body_ctx);
    f->state = DONE;
    asan_start_switch(nullptr, g_main_bottom, g_main_size);
    _longjmp(g_sched, 1);
}

inline void fiber_main() { fiber_loop(g_boot); }

static inline size_t page_size() { return (size_t)sysconf(_SC_PAGESIZE); }

// Make sure at least n fibers exist (stacks are kept and reused by later launches).
inline int ensure_fibers(unsigned n, char* err, int errlen) {
    if (n <= g_nfibers) return 0;
    if (!g_fibers) {
        g_fibers = (Fiber*)calloc(1024, sizeof(Fiber));
        g_slots = (unsigned long long*)calloc(1024, sizeof(unsigned long long));
        if (!g_fibers || !g_slots) { snprintf(err, errlen, "cuda_emu: out of memory"); return -1; }
    }
    const size_t pg = page_size();
    const size_t ss = ((size_t)CUDA_EMU_STACK_SIZE + pg - 1) / pg * pg;
    for (unsigned i = g_nfibers; i < n; ++i) {
        char* mem = (char*)mmap(nullptr, ss + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) { snprintf(err, errlen, "cuda_emu: mmap of fiber stack failed"); return -1; }
        mprotect(mem, pg, PROT_NONE);                // guard page: a stack overflow faults loudly
        Fiber* f = &g_fibers[i];
        f->stack_lo = mem + pg;
        f->stack_size = ss;
        ucontext_t uc;
        getcontext(&uc);
        uc.uc_stack.ss_sp = f->stack_lo;
        uc.uc_stack.ss_size = ss;
        uc.uc_link = nullptr;
        makecontext(&uc, (void (*)())fiber_main, 0);
        g_boot = f;
        if (_setjmp(g_sched) == 0) {
            asan_start_switch(&g_sched_fake, f->stack_lo, f->stack_size);
            setcontext(&uc);                          // runs fiber_loop up to its _setjmp(start)
        }
        asan_finish_switch(g_sched_fake, nullptr, nullptr);
        g_nfibers = i + 1;
    }
    return 0;
}

// ---- faults inside a launch (stack overflow, wild pointer) become an error, not a dead process --
inline thread_local volatile int g_fault_overflow = 0;
inline void fault_handler(int sig, siginfo_t* si, void* uctx) {
    if (g_in_launch) {
        g_fault_overflow = 0;
#if defined(__x86_64__)
        // the faulting thread's stack pointer below its fiber stack: a stack overflow
        const char* sp = (const char*)((ucontext_t*)uctx)->uc_mcontext.gregs[REG_RSP];
        if (g_cur && sp < g_cur->stack_lo + 256) g_fault_overflow = 1;
#else
        (void)uctx;
#endif
        g_fault_addr = si->si_addr;
        g_fault_sig = sig;
        siglongjmp(g_fault_env, 1);
    }
    signal(sig, SIG_DFL);                              // not ours: crash as usual
}

struct FaultGuard {                                    // installs the handler for one launch
    struct sigaction old_segv, old_bus;
    bool active = false;
    void install() {
#if !CUDA_EMU_ASAN                                     // under ASan its own handler reports faults
        static thread_local char* altstack = nullptr;
        stack_t cur;
        if (sigaltstack(nullptr, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
            const size_t sz = 64 * 1024;
            if (!altstack) altstack = (char*)malloc(sz);
            stack_t ss; ss.ss_sp = altstack; ss.ss_size = sz; ss.ss_flags = 0;
            sigaltstack(&ss, nullptr);
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = fault_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
        active = true;
#endif
    }
    ~FaultGuard() {
        if (active) { sigaction(SIGSEGV, &old_segv, nullptr); sigaction(SIGBUS, &old_bus, nullptr); }
    }
};

// ---- the scheduler ------------------------------------------------------------------------------
static inline unsigned long long splitmix(unsigned long long& s) {
    unsigned long long z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline int fail(char* err, int errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(err, errlen, "block (%u,%u,%u): ", g_block_idx.x, g_block_idx.y, g_block_idx.z);
    if (n < 0 || n >= errlen) n = 0;
    vsnprintf(err + n, errlen - n, fmt, ap);
    va_end(ap);
    return -1;
}

static inline const char* state_name(int s) {
    return s == RUNNABLE ? "running" : s == AT_BLOCK_BARRIER ? "__syncthreads" : s == AT_WARP_BARRIER ? "warp sync" : "exited";
}

// Open the warp barrier of lanes [w0, w1) if every lane it waits for has arrived: returns 1 if it
// opened, 0 if not (yet), -1 on an error (a lane exited, or lanes wait at different warp syncs).
inline int release_warp(unsigned w0, unsigned w1, char* err, int errlen) {
    bool any = false;
    for (unsigned i = w0; i < w1; ++i) {
        Fiber& f = g_fibers[i];
        if (f.state != AT_WARP_BARRIER) continue;
        any = true;
        for (unsigned l = 0; l < 32 && w0 + l < w1; ++l) {
            if (!(f.warp_mask >> l & 1u)) continue;
            Fiber& g = g_fibers[w0 + l];
            if (g.state == DONE)
                return fail(err, errlen, "thread %u exited while lane %u waits for it at a warp sync (%s:%d)",
                            w0 + l, i - w0, f.site_file, f.site_line);
            if (g.state != AT_WARP_BARRIER) return 0;
            if (g.site_line != f.site_line || g.site_phase != f.site_phase || strcmp(g.site_file, f.site_file) != 0)
                return fail(err, errlen, "lanes of warp %u wait at different warp syncs: %s:%d and %s:%d",
                            w0 / 32, f.site_file, f.site_line, g.site_file, g.site_line);
        }
    }
    if (!any) return 0;
    for (unsigned i = w0; i < w1; ++i)
        if (g_fibers[i].state == AT_WARP_BARRIER) g_fibers[i].state = RUNNABLE;
    return 1;
}

// Release every warp barrier that can open; returns 1 if any opened, -1 on error.
inline int release_warps(unsigned n, char* err, int errlen) {
    int opened = 0;
    for (unsigned w0 = 0; w0 < n; w0 += 32) {
        int r = release_warp(w0, w0 + 32 < n ? w0 + 32 : n, err, errlen);
        if (r < 0) return -1;
        opened |= r;
    }
    return opened;
}

// Run one fiber until it parks at a barrier or a warp sync, or exits.
inline void resume(Fiber* f) {
    g_cur = f;
    sched_resume(f, !f->started);
    f->started = 1;
    g_cur = nullptr;
}

// ORDER_WARP: run the lanes [w0, w1) of one warp, opening its own warp syncs as they complete, until
// every lane waits at a __syncthreads() or has exited (or waits at a warp sync that cannot open: the
// caller reports that). The other warps do not move meanwhile, as a GPU is free to schedule them.
inline int run_warp(unsigned w0, unsigned w1, char* err, int errlen) {
    for (;;) {
        bool ran = false;
        for (unsigned i = w0; i < w1; ++i)
            if (g_fibers[i].state == RUNNABLE) { resume(&g_fibers[i]); ran = true; }
        if (!ran) return 0;
        const int r = release_warp(w0, w1, err, errlen);
        if (r <= 0) return r;
    }
}

inline int run_block(const LaunchCfg& cfg, unsigned* order_buf, char* err, int errlen) {
    const unsigned bx = cfg.block[0], by = cfg.block[1], n = bx * by * cfg.block[2];
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = g_fibers[i];
        f.state = RUNNABLE;
        f.started = 0;
        f.tid = {i % bx, (i / bx) % by, i / (bx * by)};
        f.linear = i;
        f.asan_fake = nullptr;
        f.site_file = "";
        f.site_line = 0;
    }
    unsigned long long rng = cfg.seed * 0x100000001B3ull ^ (((unsigned long long)g_block_idx.z << 42) ^
                              ((unsigned long long)g_block_idx.y << 21) ^ g_block_idx.x);
    for (;;) {
        if (cfg.order == ORDER_WARP) {                 // warp 0 to its next __syncthreads(), then warp 1, ...
            for (unsigned w0 = 0; w0 < n; w0 += 32)
                if (run_warp(w0, w0 + 32 < n ? w0 + 32 : n, err, errlen) < 0) return -1;
        } else {
            unsigned m = 0;                            // this phase's runnable fibers, in order
            for (unsigned i = 0; i < n; ++i) if (g_fibers[i].state == RUNNABLE) order_buf[m++] = i;
            if (cfg.order == ORDER_REVERSE) {
                for (unsigned i = 0; i < m / 2; ++i) { unsigned t = order_buf[i]; order_buf[i] = order_buf[m - 1 - i]; order_buf[m - 1 - i] = t; }
            } else if (cfg.order == ORDER_SHUFFLE) {
                for (unsigned i = m; i > 1; --i) { unsigned j = (unsigned)(splitmix(rng) % i); unsigned t = order_buf[i - 1]; order_buf[i - 1] = order_buf[j]; order_buf[j] = t; }
            }
            for (unsigned k = 0; k < m; ++k) resume(&g_fibers[order_buf[k]]);
            // every thread is at its next synchronisation point: open the warp syncs first (lanes of other
            // warps may wait at a block barrier meanwhile). This is what makes a warp sync act as a block-wide
            // barrier in these three orders; ORDER_WARP does not have that blind spot.
            int r = release_warps(n, err, errlen);
            if (r < 0) return -1;
            if (r > 0) continue;
        }
        unsigned done = 0, at_block = 0, first_block = n, first_done = n;
        for (unsigned i = 0; i < n; ++i) {
            int s = g_fibers[i].state;
            if (s == DONE) { ++done; if (first_done == n) first_done = i; }
            else if (s == AT_BLOCK_BARRIER) { ++at_block; if (first_block == n) first_block = i; }
        }
        if (done == n) return 0;
        if (at_block + done == n) {
            const Fiber& a = g_fibers[first_block];
            if (done)
                return fail(err, errlen, "thread %u (%u,%u,%u) exited while %u threads wait at __syncthreads() (%s:%d)",
                            first_done, g_fibers[first_done].tid.x, g_fibers[first_done].tid.y, g_fibers[first_done].tid.z,
                            at_block, a.site_file, a.site_line);
            int count = 0;
            for (unsigned i = 0; i < n; ++i) {
                const Fiber& b = g_fibers[i];
                if (b.site_line != a.site_line || strcmp(b.site_file, a.site_file) != 0)
                    return fail(err, errlen, "threads wait at different barriers: thread %u at %s:%d, thread %u at %s:%d",
                                first_block, a.site_file, a.site_line, i, b.site_file, b.site_line);
                count += b.pred != 0;
            }
            g_bar_result = count;
            for (unsigned i = 0; i < n; ++i) g_fibers[i].state = RUNNABLE;
            continue;
        }
        // nobody can move: describe the deadlock
        unsigned i0 = 0;
        while (i0 < n && g_fibers[i0].state != AT_WARP_BARRIER) ++i0;
        const Fiber& a = g_fibers[i0 < n ? i0 : first_block];
        return fail(err, errlen, "deadlock: %u threads at __syncthreads, %u exited, thread %u waits at %s (%s:%d)",
                    at_block, done, a.linear, state_name(a.state), a.site_file, a.site_line);
    }
}

// Dynamic shared memory arrays of this translation unit (registered by the generated code).
struct DynSmem { void* (*addr)(); };
inline DynSmem g_dyn_smem[16];
inline int g_n_dyn_smem = 0;
inline int register_dyn_smem(void* (*addr)()) {
    if (g_n_dyn_smem < 16) g_dyn_smem[g_n_dyn_smem++] = {addr};
    return 0;
}

// ---- shared-memory areas and their guard zones -----------------------------------------------------
// A kernel that splits its dynamic shared memory into areas (states, errors, filters, ...) can name each
// one with CUDA_EMU_SHARED_AREA(name, ptr, count) and leave a gap after it (the whole-settle kernel does,
// in the emulated build only). The gaps, and the tail after the last area up to the launch's shared_mem,
// keep the block's 0xFF fill; when the block ends a changed byte there is reported with the names of the
// areas on either side. Under ASan the gaps are poisoned as well, so the faulting line is reported.
struct SharedArea { const char* name; char* begin; size_t bytes; int dyn; };
inline thread_local SharedArea g_areas[32];
inline thread_local int g_n_areas = 0;
inline thread_local SharedArea g_last_areas[32];       // the areas of the last block that ended (for Python)
inline thread_local int g_n_last_areas = 0;
inline thread_local char g_area_err[512];
inline thread_local unsigned long long g_launch_shared_mem = 0;
inline thread_local int g_launch_fill = 1;

inline int dyn_index(const void* p) {
    for (int i = 0; i < g_n_dyn_smem; ++i) {
        const char* base = (const char*)g_dyn_smem[i].addr();
        if ((const char*)p >= base && (const char*)p < base + CUDA_EMU_DYN_SMEM_MAX) return i;
    }
    return -1;
}

// The areas of dynamic array d sorted by address (n <= 32: insertion sort).
inline int sorted_areas(int d, SharedArea* out) {
    int m = 0;
    for (int i = 0; i < g_n_areas; ++i) {
        if (g_areas[i].dyn != d) continue;
        int j = m++;
        while (j > 0 && out[j - 1].begin > g_areas[i].begin) { out[j] = out[j - 1]; --j; }
        out[j] = g_areas[i];
    }
    return m;
}

// Visit every gap of dynamic array d: fn(gap_begin, gap_end, area before, area after or nullptr).
template <class Fn> inline void for_each_gap(int d, Fn fn) {
    SharedArea s[32];
    const int m = sorted_areas(d, s);
    char* end_of_launch = (char*)g_dyn_smem[d].addr() + g_launch_shared_mem;
    for (int i = 0; i < m; ++i) {
        char* a = s[i].begin + s[i].bytes;
        char* b = i + 1 < m ? s[i + 1].begin : end_of_launch;
        if (b > a) fn(a, b, s[i], i + 1 < m ? &s[i + 1] : nullptr);
    }
}

inline void shared_area(const char* name, const void* ptr, size_t bytes, const char* file, int line) {
    if (g_area_err[0]) return;
    for (int i = 0; i < g_n_areas; ++i)
        if (strcmp(g_areas[i].name, name) == 0) {            // every thread names the areas: once is enough
            if (g_areas[i].begin != (const char*)ptr || g_areas[i].bytes != bytes)
                snprintf(g_area_err, sizeof g_area_err, "shared-memory area '%s' named twice with different extents (%s:%d)",
                         name, file, line);
            return;
        }
    const int d = dyn_index(ptr);
    if (d < 0) { snprintf(g_area_err, sizeof g_area_err, "shared-memory area '%s' is not in dynamic shared memory (%s:%d)", name, file, line); return; }
    if (g_n_areas == 32) { snprintf(g_area_err, sizeof g_area_err, "more than 32 shared-memory areas (%s:%d)", file, line); return; }
    const size_t off = (const char*)ptr - (const char*)g_dyn_smem[d].addr();
    if (off + bytes > g_launch_shared_mem) {
        snprintf(g_area_err, sizeof g_area_err, "shared-memory area '%s' (bytes %zu..%zu) runs past the %llu bytes of dynamic "
                 "shared memory the launch requested (%s:%d)", name, off, off + bytes, g_launch_shared_mem, file, line);
        return;
    }
    g_areas[g_n_areas++] = {name, (char*)ptr, bytes, d};
#if CUDA_EMU_ASAN                  // the tail after the last area named so far was poisoned: start again
    __asan_unpoison_memory_region(g_dyn_smem[d].addr(), g_launch_shared_mem);
    for_each_gap(d, [](char* a, char* b, const SharedArea&, const SharedArea*) { __asan_poison_memory_region(a, b - a); });
#endif
}

// At the end of a block: the guard zones must still hold the fill. Then forget the block's areas.
inline int check_areas(int rc, char* err, int errlen) {
    if (rc == 0 && g_area_err[0]) rc = fail(err, errlen, "%s", g_area_err);
    for (int d = 0; d < g_n_dyn_smem && rc == 0; ++d) {
        if (!g_launch_fill) break;                            // without the fill there is nothing to compare with
#if CUDA_EMU_ASAN
        for_each_gap(d, [](char* a, char* b, const SharedArea&, const SharedArea*) { __asan_unpoison_memory_region(a, b - a); });
#endif
        for_each_gap(d, [&](char* a, char* b, const SharedArea& before, const SharedArea* after) {
            for (char* p = a; p < b && rc == 0; ++p)
                if ((unsigned char)*p != 0xFF) {
                    if (after)
                        rc = fail(err, errlen, "shared-memory guard zone between '%s' and '%s' was written (byte %zu past the end "
                                  "of '%s', %zu before the start of '%s'): an index ran out of '%s' or into '%s' from below",
                                  before.name, after->name, (size_t)(p - a), before.name, (size_t)(b - p), after->name,
                                  before.name, after->name);
                    else
                        rc = fail(err, errlen, "shared-memory guard zone after '%s', the last area, was written (byte %zu past "
                                  "its end): an index ran out of '%s'", before.name, (size_t)(p - a), before.name);
                }
        });
    }
#if CUDA_EMU_ASAN
    for (int d = 0; d < g_n_dyn_smem; ++d) __asan_unpoison_memory_region(g_dyn_smem[d].addr(), g_launch_shared_mem);
#endif
    for (int i = 0; i < g_n_areas; ++i) g_last_areas[i] = g_areas[i];
    g_n_last_areas = g_n_areas;
    g_n_areas = 0;
    g_area_err[0] = 0;
    return rc;
}

// ---- static __shared__ variables: filled with 0xFF at their first use in each block ----------------
// cuda_emu/module.py appends CUDA_EMU_STATIC_SHARED(name) to every function-scope `__shared__` declaration.
// The first thread of a block to pass the declaration fills the variable (no thread can touch it before
// passing its own declaration), so reading static shared memory that this block never wrote gives NaN
// (or -1) in every order, as reading unwritten dynamic shared memory does.
struct StaticShared { void* p; size_t n; unsigned long long block; };
inline thread_local StaticShared g_static[256];
inline thread_local int g_n_static = 0;
inline thread_local unsigned long long g_block_serial = 0;   // +1 for every block of every launch

inline void static_shared(void* p, size_t n) {
    if (!g_launch_fill) return;
    for (int i = 0; i < g_n_static; ++i)
        if (g_static[i].p == p) {
            if (g_static[i].block != g_block_serial) { memset(p, 0xFF, n); g_static[i].block = g_block_serial; }
            return;
        }
    if (g_n_static < 256) g_static[g_n_static++] = {p, n, g_block_serial};
    memset(p, 0xFF, n);
}

inline int launch(const LaunchCfg& cfg, BodyFn body, void* ctx, char* err, int errlen) {
    err[0] = 0;
    const unsigned* b = cfg.block;
    const unsigned* g = cfg.grid;
    const unsigned long long nt = (unsigned long long)b[0] * b[1] * b[2];
    g_block_idx = {0, 0, 0};
    if (b[0] == 0 || b[1] == 0 || b[2] == 0 || g[0] == 0 || g[1] == 0 || g[2] == 0)
        return fail(err, errlen, "invalid configuration: zero grid or block dimension (grid %u,%u,%u block %u,%u,%u)", g[0], g[1], g[2], b[0], b[1], b[2]);
    if (nt > 1024 || b[0] > 1024 || b[1] > 1024 || b[2] > 64)
        return fail(err, errlen, "invalid configuration: block (%u,%u,%u) has %llu threads; at most 1024 (z at most 64)", b[0], b[1], b[2], nt);
    if (g[1] > 65535 || g[2] > 65535)
        return fail(err, errlen, "invalid configuration: grid y/z above 65535");
    if (cfg.shared_mem > cfg.shared_mem_cap || cfg.shared_mem > (unsigned long long)CUDA_EMU_DYN_SMEM_MAX)
        return fail(err, errlen, "too much dynamic shared memory: %llu bytes requested, %llu allowed (raise max_dynamic_shared_size_bytes; hardware limit %d)",
                    cfg.shared_mem, cfg.shared_mem_cap, (int)CUDA_EMU_DYN_SMEM_MAX);
    if (ensure_fibers((unsigned)nt, err, errlen)) return -1;
    unsigned order_buf[1024];
    g_block_dim = dim3(b[0], b[1], b[2]);
    g_grid_dim = dim3(g[0], g[1], g[2]);
    g_body = body;
    g_body_ctx = ctx;
    g_nthreads = (unsigned)nt;
    g_launch_shared_mem = cfg.shared_mem;
    g_launch_fill = cfg.fill_shared;
    g_n_areas = 0;
    g_area_err[0] = 0;
#if CUDA_EMU_ASAN                                     // exactly shared_mem bytes are addressable
    for (int i = 0; i < g_n_dyn_smem; ++i) {
        char* p = (char*)g_dyn_smem[i].addr();
        __asan_unpoison_memory_region(p, CUDA_EMU_DYN_SMEM_MAX);
        __asan_poison_memory_region(p + cfg.shared_mem, CUDA_EMU_DYN_SMEM_MAX - cfg.shared_mem);
    }
#endif
    FaultGuard guard;
    guard.install();
    int rc = 0;
    if (sigsetjmp(g_fault_env, 1) == 0) {
        g_in_launch = 1;
        for (unsigned z = 0; z < g[2] && rc == 0; ++z)
            for (unsigned y = 0; y < g[1] && rc == 0; ++y)
                for (unsigned x = 0; x < g[0] && rc == 0; ++x) {
                    g_block_idx = {x, y, z};
                    ++g_block_serial;                 // static __shared__ variables are refilled at first use
                    if (cfg.fill_shared)
                        for (int i = 0; i < g_n_dyn_smem; ++i) memset(g_dyn_smem[i].addr(), 0xFF, cfg.shared_mem);
                    rc = check_areas(run_block(cfg, order_buf, err, errlen), err, errlen);
                }
    } else {
        const char* where = "";
        char* a = (char*)g_fault_addr;
        for (unsigned i = 0; i < g_nfibers; ++i)
            if (a >= g_fibers[i].stack_lo - page_size() && a < g_fibers[i].stack_lo) g_fault_overflow = 1;
        if (g_fault_overflow)
            where = " (fiber stack overflow: the thread's locals exceed CUDA_EMU_STACK_SIZE; EmuModule(stack_size=...))";
        unsigned t = g_cur ? g_cur->linear : 0;
        rc = fail(err, errlen, "%s at address %p in thread %u%s", g_fault_sig == SIGBUS ? "bus error" : "segmentation fault",
                  (void*)a, t, where);
    }
    g_in_launch = 0;
    g_cur = nullptr;
    g_n_areas = 0;
#if CUDA_EMU_ASAN
    for (int i = 0; i < g_n_dyn_smem; ++i) __asan_unpoison_memory_region(g_dyn_smem[i].addr(), CUDA_EMU_DYN_SMEM_MAX);
#endif
    return rc;
}

// ---- barriers and warp operations (called on fiber stacks) ---------------------------------------
inline void syncthreads(const char* file, int line, int pred) {
    Fiber* f = g_cur;
    f->state = AT_BLOCK_BARRIER;
    f->site_file = file;
    f->site_line = line;
    f->pred = pred;
    fiber_park(f);
}

inline void warp_sync(unsigned mask, const char* file, int line, int phase) {
    Fiber* f = g_cur;
    f->state = AT_WARP_BARRIER;
    f->warp_mask = mask | (1u << (f->linear & 31));
    f->site_file = file;
    f->site_line = line;
    f->site_phase = phase;
    fiber_park(f);
}

// Two-phase exchange: publish, warp barrier, read the partner's slot, warp barrier (so no lane
// overwrites its slot before every lane has read it).
template <class T>
inline T exchange(unsigned mask, T v, int src_lane, const char* file, int line) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    Fiber* f = g_cur;
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof(T));
    g_slots[f->linear] = bits;
    warp_sync(mask, file, line, 0);
    unsigned src = (f->linear & ~31u) + (unsigned)src_lane;
    T r;
    if (src < g_nthreads) memcpy(&r, &g_slots[src], sizeof(T));
    else memset(&r, 0xFF, sizeof(T));     // lane beyond the block's last thread: undefined on a GPU; NaN / -1 here
    warp_sync(mask, file, line, 1);
    return r;
}

inline int lane_id() { return (int)(g_cur->linear & 31); }

template <class T> inline T shfl(unsigned mask, T v, int src, int width, const char* file, int line) {
    int lane = lane_id();
    int s = (lane & ~(width - 1)) + (src & (width - 1));
    return exchange(mask, v, s, file, line);
}
template <class T> inline T shfl_down(unsigned mask, T v, unsigned d, int width, const char* file, int line) {
    int lane = lane_id();
    int s = ((lane & (width - 1)) + (int)d < width) ? lane + (int)d : lane;
    return exchange(mask, v, s, file, line);
}
template <class T> inline T shfl_up(unsigned mask, T v, unsigned d, int width, const char* file, int line) {
    int lane = lane_id();
    int s = ((lane & (width - 1)) >= (int)d) ? lane - (int)d : lane;
    return exchange(mask, v, s, file, line);
}
template <class T> inline T shfl_xor(unsigned mask, T v, int lm, int width, const char* file, int line) {
    int lane = lane_id();
    int s = lane ^ lm;
    if ((s & ~(width - 1)) > (lane & ~(width - 1))) s = lane;   // later groups: own value
    return exchange(mask, v, s, file, line);
}

// __ballot_sync etc.: publish the predicate, warp barrier, combine over the mask, warp barrier.
inline unsigned ballot(unsigned mask, int pred, const char* file, int line) {
    Fiber* f = g_cur;
    g_slots[f->linear] = pred != 0;
    warp_sync(mask, file, line, 0);
    unsigned w0 = f->linear & ~31u, r = 0;
    for (unsigned l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && w0 + l < g_nthreads && g_slots[w0 + l]) r |= 1u << l;
    warp_sync(mask, file, line, 1);
    return r;
}

}  // namespace cuda_emu

// ---- built-in variables: per fiber / per block --------------------------------------------------
#define threadIdx (static_cast<const uint3&>(::cuda_emu::g_cur->tid))
#define blockIdx (static_cast<const uint3&>(::cuda_emu::g_block_idx))
#define blockDim (static_cast<const dim3&>(::cuda_emu::g_block_dim))
#define gridDim (static_cast<const dim3&>(::cuda_emu::g_grid_dim))
#define warpSize 32

#define __syncthreads() ::cuda_emu::syncthreads(__FILE__, __LINE__, 0)
#define __syncthreads_count(p) (::cuda_emu::syncthreads(__FILE__, __LINE__, (p)), ::cuda_emu::g_bar_result)
#define __syncthreads_and(p) (::cuda_emu::syncthreads(__FILE__, __LINE__, (p)), ::cuda_emu::g_bar_result == (int)::cuda_emu::g_nthreads)
#define __syncthreads_or(p) (::cuda_emu::syncthreads(__FILE__, __LINE__, (p)), ::cuda_emu::g_bar_result > 0)
#define __syncwarp(...) ::cuda_emu::warp_sync(::cuda_emu::syncwarp_mask(__VA_ARGS__), __FILE__, __LINE__, 0)
namespace cuda_emu { inline unsigned syncwarp_mask(unsigned m = 0xffffffffu) { return m; } }
#define __shfl_sync(m, v, s, ...) ::cuda_emu::shfl((m), (v), (s), ::cuda_emu::width_arg(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_down_sync(m, v, d, ...) ::cuda_emu::shfl_down((m), (v), (d), ::cuda_emu::width_arg(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_up_sync(m, v, d, ...) ::cuda_emu::shfl_up((m), (v), (d), ::cuda_emu::width_arg(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_xor_sync(m, v, l, ...) ::cuda_emu::shfl_xor((m), (v), (l), ::cuda_emu::width_arg(__VA_ARGS__), __FILE__, __LINE__)
namespace cuda_emu { inline int width_arg(int w = 32) { return w; } }
#define __ballot_sync(m, p) ::cuda_emu::ballot((m), (p), __FILE__, __LINE__)
#define __any_sync(m, p) (::cuda_emu::ballot((m), (p), __FILE__, __LINE__) != 0u)
#define __all_sync(m, p) (::cuda_emu::ballot((m), !(p), __FILE__, __LINE__) == 0u)
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define CUDA_EMU_SHARED_AREA(name, ptr, count) \
    ::cuda_emu::shared_area((name), (ptr), (size_t)(count) * sizeof(*(ptr)), __FILE__, __LINE__)
#define CUDA_EMU_STATIC_SHARED(var) ::cuda_emu::static_shared((void*)&(var), sizeof(var))
#define __threadfence_block() __atomic_signal_fence(__ATOMIC_SEQ_CST)

// ---- atomics: fibers never interleave inside one call, and blocks run one at a time -------------
#define CUDA_EMU_ATOMICS(T)                                                                       \
    static inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }                \
    static inline T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }                \
    static inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }                     \
    static inline T atomicMax(T* p, T v) { T old = *p; *p = old > v ? old : v; return old; }      \
    static inline T atomicMin(T* p, T v) { T old = *p; *p = old < v ? old : v; return old; }      \
    static inline T atomicCAS(T* p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }
CUDA_EMU_ATOMICS(int)
CUDA_EMU_ATOMICS(unsigned int)
CUDA_EMU_ATOMICS(unsigned long long)
CUDA_EMU_ATOMICS(float)
CUDA_EMU_ATOMICS(double)
#undef CUDA_EMU_ATOMICS
static inline int atomicAnd(int* p, int v) { int old = *p; *p = old & v; return old; }
static inline unsigned atomicAnd(unsigned* p, unsigned v) { unsigned old = *p; *p = old & v; return old; }
static inline int atomicOr(int* p, int v) { int old = *p; *p = old | v; return old; }
static inline unsigned atomicOr(unsigned* p, unsigned v) { unsigned old = *p; *p = old | v; return old; }
static inline unsigned atomicInc(unsigned* p, unsigned v) { unsigned old = *p; *p = old >= v ? 0 : old + 1; return old; }

// ---- intrinsics and math ------------------------------------------------------------------------
template <class T> static inline T __ldg(const T* p) { return *p; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline long long __double_as_longlong(double d) { long long i; memcpy(&i, &d, 8); return i; }
static inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
#define __expf(x) expf(x)        /* glibc declares __expf/__logf itself: use macros */
#define __logf(x) logf(x)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : (x == x ? x : 0.f)); }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline unsigned min(int a, unsigned b) { return min((unsigned)a, b); }
static inline unsigned min(unsigned a, int b) { return min(a, (unsigned)b); }
static inline unsigned max(int a, unsigned b) { return max((unsigned)a, b); }
static inline unsigned max(unsigned a, int b) { return max(a, (unsigned)b); }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

// The shared-memory areas the last block named, one "name offset bytes" line each (offset from the start
// of its dynamic shared memory array): EmuFunction.shared_areas reads this after a launch.
extern "C" __attribute__((visibility("default"))) int cuda_emu_shared_areas(char* buf, int len) {
    int n = 0;
    buf[0] = 0;
    for (int i = 0; i < ::cuda_emu::g_n_last_areas && n < len; ++i) {
        const ::cuda_emu::SharedArea& a = ::cuda_emu::g_last_areas[i];
        n += snprintf(buf + n, len - n, "%s %zu %zu\n", a.name,
                      (size_t)(a.begin - (char*)::cuda_emu::g_dyn_smem[a.dyn].addr()), a.bytes);
    }
    return n;
}

#endif  // !__CUDACC__ && !__CUDACC_RTC__
