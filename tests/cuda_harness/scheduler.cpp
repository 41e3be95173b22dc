// The CPU harness's scheduler (docs/harness.md): every CUDA thread of a block is a fiber
// with its own guarded stack; the blocks of a grid run one at a time in a seeded random order.
// A fiber runs until it reaches a warp primitive or __syncthreads, where it records its arrival
// and switches back here. Once no fiber can run, the meetings are checked: a warp primitive
// completes when every lane of its mask waits at the same primitive (same kind, mask and call
// site); a lane of the mask that has exited or waits elsewhere is an error, as is a deadlock.
// Between meetings the runnable fibers are resumed in a seeded random order, so that a missing
// __syncwarp (a lane reading what another lane has not written yet) changes the results.
#include <cuda_runtime.h>
#include <cstring>
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#if !defined(__x86_64__)
#error "the harness's context switch (cn_harness_switch_stack) is written for x86-64"
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define HARNESS_ASAN 1
#else
#define HARNESS_ASAN 0
#endif

namespace cuda_harness {
namespace {

// Room for the kernels' per-thread arrays (the MLP kernels keep up to 1024 + 32 values) with
// AddressSanitizer's redzones; a guard page below catches an overflow.
constexpr size_t kStackBytes = 512 * 1024;
constexpr int kWarp = 32;

// ---- context switch ---------------------------------------------------------------------------
// switch_stack(&save, next): saves the callee-saved registers, MXCSR and the x87 control word on
// the current stack, stores the stack pointer in *save, and resumes the context saved at `next`.
// (glibc's swapcontext also saves the signal mask, a system call per switch, which made it
// several times slower; the kernels' warp sums switch hundreds of times per point.)
extern "C" void cn_harness_switch_stack(void** save, void* next);
asm(R"(
  .text
  .globl cn_harness_switch_stack
  .type cn_harness_switch_stack,@function
cn_harness_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cn_harness_switch_stack, .-cn_harness_switch_stack
)");

// A fresh context on [stack, stack + bytes) that starts in entry() (which must never return).
void* new_context(char* stack, size_t bytes, void (*entry)()) {
  auto* top = reinterpret_cast<uint64_t*>(
      (reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t(15)));
  // from the saved stack pointer up: MXCSR | x87 CW, r15, r14, r13, r12, rbx, rbp, return
  // address, and one pad slot so that entry() starts with the stack aligned as after a call
  uint64_t* sp = top - 9;
  sp[0] = 0x1F80ull | (0x037Full << 32);
  for (int i = 1; i <= 6; ++i) sp[i] = 0;
  sp[7] = reinterpret_cast<uint64_t>(entry);
  sp[8] = 0;
  return sp;
}

// The device this harness pretends to be: an H100.
struct Device {
  int default_smem = 48 * 1024;
  int optin_smem = 227 * 1024;
  int max_threads = 1024;
} g_device;

uint64_t g_seed = 1;

enum class State { runnable, at_warp, at_block, exited };

struct Fiber {
  void* ctx = nullptr;  // saved stack pointer while suspended
  char* stack = nullptr;  // usable stack (above the guard page)
  void* fake_stack = nullptr;
  State state = State::runnable;
  Coords coords;
  // the pending warp primitive
  Op op = Op::syncwarp;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int arg = 0, width = kWarp;
  std::source_location site;
};

const char* op_name(Op op) {
  switch (op) {
    case Op::syncwarp: return "__syncwarp";
    case Op::shfl: return "__shfl_sync";
    case Op::shfl_up: return "__shfl_up_sync";
    case Op::shfl_down: return "__shfl_down_sync";
    case Op::shfl_xor: return "__shfl_xor_sync";
    case Op::ballot: return "__ballot_sync";
    case Op::any: return "__any_sync";
    case Op::all: return "__all_sync";
  }
  return "?";
}

std::string where(const std::source_location& s) {
  return std::string(s.file_name()) + ":" + std::to_string(s.line());
}

// The kernel's name from the debug info (anonymous-namespace kernels have no dynamic symbol).
std::string kernel_name(const void* kernel) {
  Dl_info info{};
  if (dladdr(kernel, &info) && info.dli_fname) {
    char cmd[1024];
    std::snprintf(cmd, sizeof cmd, "addr2line -f -C -e '%s' 0x%zx 2>/dev/null", info.dli_fname,
                  size_t(static_cast<const char*>(kernel) - static_cast<const char*>(info.dli_fbase)));
    if (FILE* p = popen(cmd, "r")) {
      char line[2048] = {};
      const bool ok = std::fgets(line, sizeof line, p) != nullptr;
      pclose(p);
      std::string s(line);
      while (!s.empty() && (s.back() == '\n')) s.pop_back();
      if (ok && !s.empty() && s != "??") return s;
    }
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "kernel@%p", kernel);
  return buf;
}

// Stacks are reused by the blocks of every launch.
std::vector<char*> g_stacks;
char* stack_for(size_t i) {
  while (g_stacks.size() <= i) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    mprotect(m, page, PROT_NONE);  // guard page: a stack overflow faults
    g_stacks.push_back(static_cast<char*>(m) + page);
  }
  return g_stacks[i];
}

struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One block being run.
struct Block {
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  std::unique_ptr<unsigned char[]> smem_owner;
  unsigned char* smem = nullptr;
  void* sched_ctx = nullptr;
  void* sched_fake_stack = nullptr;
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
  int current = -1;
  std::string kernel;  // for messages
};
Block* g_block = nullptr;

cudaError_t g_pending = cudaSuccess;
std::string g_message;
std::map<const void*, int> g_max_dynamic_smem;  // cudaFuncSetAttribute

void set_error(cudaError_t e, const std::string& msg) {
  g_pending = e;
  g_message = msg;
}

// ---- fiber switches, annotated for AddressSanitizer -------------------------------------------

void fiber_main();

void switch_to_fiber(Block& b, int i) {
  Fiber& f = b.fibers[i];
  b.current = i;
#if HARNESS_ASAN
  __sanitizer_start_switch_fiber(&b.sched_fake_stack, f.stack, kStackBytes);
#endif
  cn_harness_switch_stack(&b.sched_ctx, f.ctx);
#if HARNESS_ASAN
  __sanitizer_finish_switch_fiber(b.sched_fake_stack, nullptr, nullptr);
#endif
  b.current = -1;
}

// Called by the running fiber: back to the scheduler until it is resumed.
void suspend(Fiber& f) {
  Block& b = *g_block;
#if HARNESS_ASAN
  __sanitizer_start_switch_fiber(&f.fake_stack, b.sched_stack_bottom, b.sched_stack_size);
#endif
  cn_harness_switch_stack(&f.ctx, b.sched_ctx);
#if HARNESS_ASAN
  __sanitizer_finish_switch_fiber(f.fake_stack, &b.sched_stack_bottom, &b.sched_stack_size);
#endif
}

void fiber_main() {
  Block& b = *g_block;
#if HARNESS_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &b.sched_stack_bottom, &b.sched_stack_size);
#endif
  (*b.body)();
  Fiber& f = b.fibers[b.current];
  f.state = State::exited;
#if HARNESS_ASAN
  __sanitizer_start_switch_fiber(nullptr, b.sched_stack_bottom, b.sched_stack_size);
#endif
  void* dead = nullptr;
  cn_harness_switch_stack(&dead, b.sched_ctx);
  std::abort();  // never resumed
}

Fiber& running() {
  if (!g_block || g_block->current < 0)
    throw std::logic_error("cuda_harness: a device function ran outside a kernel");
  return g_block->fibers[g_block->current];
}

// ---- meetings -------------------------------------------------------------------------------

std::string lane_list(const std::vector<int>& lanes) {
  std::string s;
  for (size_t i = 0; i < lanes.size(); ++i) s += (i ? "," : "") + std::to_string(lanes[i]);
  return s;
}

std::string describe(const Fiber& f) {
  switch (f.state) {
    case State::exited: return "has exited";
    case State::at_block: return "waits at __syncthreads at " + where(f.site);
    case State::at_warp: {
      char m[16];
      std::snprintf(m, sizeof m, "0x%08x", f.mask);
      return std::string("waits at ") + op_name(f.op) + "(mask " + m + ") at " + where(f.site);
    }
    case State::runnable: return "is runnable";
  }
  return "?";
}

// Lane `l` of warp `w`: the fiber index, or -1 when the block has no such thread.
int fiber_of(const Block& b, int w, int l) {
  const int i = w * kWarp + l;
  return i < int(b.fibers.size()) ? i : -1;
}

std::string prefix(const Block& b, int w) {
  const Coords& c = b.fibers[size_t(w) * kWarp].coords;
  std::ostringstream o;
  o << "kernel " << b.kernel << ", block (" << c.block.x << "," << c.block.y << "," << c.block.z
    << "), warp " << w << ": ";
  return o.str();
}

// Completes the warp's meetings whose lanes are all present; returns whether any completed.
bool resolve_warp(Block& b, int w) {
  std::vector<int> waiting;
  for (int l = 0; l < kWarp; ++l) {
    const int i = fiber_of(b, w, l);
    if (i >= 0 && b.fibers[i].state == State::at_warp) waiting.push_back(l);
  }
  if (waiting.empty()) return false;
  const Fiber& first = b.fibers[fiber_of(b, w, waiting[0])];
  const unsigned mask = first.mask;
  std::vector<int> members;
  for (int l = 0; l < kWarp; ++l)
    if (mask >> l & 1u) members.push_back(l);
  auto what = [&] { return std::string(op_name(first.op)) + " at " + where(first.site); };
  if (!(mask >> waiting[0] & 1u))
    throw KernelError(prefix(b, w) + "lane " + std::to_string(waiting[0]) + " calls " + what() +
                      " with a mask that excludes itself");
  for (int l : members) {
    const int i = fiber_of(b, w, l);
    const Fiber* f = i >= 0 ? &b.fibers[i] : nullptr;
    const bool agrees = f && f->state == State::at_warp && f->op == first.op &&
                        f->mask == mask && f->site.line() == first.site.line() &&
                        (f->site.file_name() == first.site.file_name() ||
                         std::strcmp(f->site.file_name(), first.site.file_name()) == 0);
    if (!agrees) {
      std::vector<int> present;
      for (int k : waiting) {
        const Fiber& g = b.fibers[fiber_of(b, w, k)];
        if (g.op == first.op && g.mask == mask && g.site.line() == first.site.line()) present.push_back(k);
      }
      throw KernelError(prefix(b, w) + "lanes " + lane_list(present) + " wait at " + what() +
                        " (mask " + [&] { char m[16]; std::snprintf(m, sizeof m, "0x%08x", mask); return std::string(m); }() +
                        ") but lane " + std::to_string(l) + " " +
                        (f ? describe(*f) : std::string("does not exist (block too small)")));
    }
  }
  // Every lane of the mask is here: compute each lane's result.
  for (int l : members) {
    Fiber& f = b.fibers[fiber_of(b, w, l)];
    int src = l;
    switch (f.op) {
      case Op::shfl: src = (l & ~(f.width - 1)) + (f.arg & (f.width - 1)); break;
      case Op::shfl_up: src = l - f.arg; if (src < (l & ~(f.width - 1))) src = l; break;
      case Op::shfl_down: src = l + f.arg; if (src >= (l & ~(f.width - 1)) + f.width) src = l; break;
      case Op::shfl_xor: src = l ^ f.arg; break;
      default: break;
    }
    if (f.op == Op::shfl || f.op == Op::shfl_up || f.op == Op::shfl_down || f.op == Op::shfl_xor) {
      if (src < 0 || src >= kWarp)
        throw KernelError(prefix(b, w) + "lane " + std::to_string(l) + ": " + what() + " reads lane " +
                          std::to_string(src) + ", outside the warp (offset " + std::to_string(f.arg) + ")");
      if (!(mask >> src & 1u))
        throw KernelError(prefix(b, w) + "lane " + std::to_string(l) + ": " + what() + " reads lane " +
                          std::to_string(src) + ", which is not in the mask");
      f.result = b.fibers[fiber_of(b, w, src)].value;
    } else if (f.op == Op::ballot || f.op == Op::any || f.op == Op::all) {
      uint64_t ballot = 0;
      for (int k : members) ballot |= b.fibers[fiber_of(b, w, k)].value << k;
      f.result = f.op == Op::ballot ? ballot : f.op == Op::any ? ballot != 0 : ballot == mask;
    }
  }
  for (int l : members) b.fibers[fiber_of(b, w, l)].state = State::runnable;
  return true;
}

bool resolve_barrier(Block& b) {
  bool any = false;
  for (const Fiber& f : b.fibers) {
    if (f.state == State::at_block) any = true;
    else if (f.state != State::exited) return false;
  }
  if (!any) return false;
  for (Fiber& f : b.fibers)
    if (f.state == State::at_block) f.state = State::runnable;
  return true;
}

std::string deadlock(const Block& b) {
  std::string s = "kernel " + b.kernel + ": deadlock, no thread can run:";
  for (size_t i = 0; i < b.fibers.size(); ++i)
    if (b.fibers[i].state != State::exited) {
      s += "\n  thread " + std::to_string(i) + " " + describe(b.fibers[i]);
      if (s.size() > 2000) return s + "\n  ...";
    }
  return s;
}

void run_block(Block& b, std::mt19937_64& rng) {
  const size_t n = b.fibers.size();
  for (size_t i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.stack = stack_for(i);
#if HARNESS_ASAN
    // fiber_main's frame of the stack's last user never returned: clear its poisoning
    ASAN_UNPOISON_MEMORY_REGION(f.stack + kStackBytes - 16384, 16384);
#endif
    f.ctx = new_context(f.stack, kStackBytes, fiber_main);
  }
  std::vector<int> order(n);
  for (;;) {
    order.clear();
    for (size_t i = 0; i < n; ++i)
      if (b.fibers[i].state == State::runnable) order.push_back(int(i));
    std::shuffle(order.begin(), order.end(), rng);
    for (int i : order) switch_to_fiber(b, i);
    bool done = true;
    for (const Fiber& f : b.fibers) done = done && f.state == State::exited;
    if (done) return;
    bool progressed = false;
    for (size_t w = 0; w * kWarp < n; ++w) progressed = resolve_warp(b, int(w)) || progressed;
    if (!progressed) progressed = resolve_barrier(b);
    // e.g. threads at __syncthreads while a whole warp waits at a partial-mask primitive
    if (!progressed) throw KernelError(deadlock(b));
  }
}

void abandon(Block& b) {
  // Fibers stopped mid-kernel never unwind: clear their stacks' poisoning before reuse.
  for (Fiber& f : b.fibers) {
    (void)f;
#if HARNESS_ASAN
    if (f.state != State::exited) ASAN_UNPOISON_MEMORY_REGION(f.stack, kStackBytes);
#endif
  }
}

}  // namespace

const Coords& coords() { return running().coords; }

uint64_t warp_meet(Op op, unsigned mask, uint64_t value, int arg, int width,
                   const std::source_location& site) {
  Fiber& f = running();
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.arg = arg;
  f.width = width;
  f.site = site;
  f.state = State::at_warp;
  suspend(f);
  return f.result;
}

void block_barrier(const std::source_location& site) {
  Fiber& f = running();
  f.site = site;
  f.state = State::at_block;
  suspend(f);
}

unsigned char* dynamic_shared() {
  running();
  return g_block->smem;
}

cudaError_t func_set_attribute(const void* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      value > g_device.optin_smem) {
    set_error(cudaErrorInvalidValue, "cudaFuncSetAttribute: " + std::to_string(value) +
                                         " bytes exceed the opt-in limit of " +
                                         std::to_string(g_device.optin_smem));
    return cudaErrorInvalidValue;
  }
  g_max_dynamic_smem[kernel] = value;
  return cudaSuccess;
}

void run_grid(const void* kernel, dim3 grid, dim3 block, size_t smem_bytes,
              const std::function<void()>& thread_body) {
  const size_t threads = size_t(block.x) * block.y * block.z;
  const auto it = g_max_dynamic_smem.find(kernel);
  const size_t smem_limit = size_t(it == g_max_dynamic_smem.end() ? g_device.default_smem : it->second);
  if (threads == 0 || threads > size_t(g_device.max_threads) || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
    set_error(cudaErrorInvalidConfiguration,
              "invalid configuration argument (block " + std::to_string(block.x) + "x" +
                  std::to_string(block.y) + "x" + std::to_string(block.z) + ", grid " +
                  std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" + std::to_string(grid.z) + ")");
    return;
  }
  if (smem_bytes > smem_limit) {
    set_error(cudaErrorInvalidValue, "invalid argument: " + std::to_string(smem_bytes) +
                                         " bytes of dynamic shared memory, the kernel's limit is " +
                                         std::to_string(smem_limit) + " (cudaFuncSetAttribute)");
    return;
  }
  // The blocks in a seeded random order: a kernel whose result depends on it shows it.
  std::vector<uint64_t> order(size_t(grid.x) * grid.y * grid.z);
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(g_seed);
  std::shuffle(order.begin(), order.end(), rng);
  Block b;
  b.body = &thread_body;
  b.kernel = kernel_name(kernel);
  g_block = &b;
  try {
    for (uint64_t id : order) {
      const uint3 bid{unsigned(id % grid.x), unsigned(id / grid.x % grid.y),
                      unsigned(id / grid.x / grid.y)};
      b.fibers.assign(threads, Fiber{});
      for (size_t t = 0; t < threads; ++t)
        b.fibers[t].coords = {{unsigned(t % block.x), unsigned(t / block.x % block.y),
                               unsigned(t / block.x / block.y)},
                              bid, block, grid};
      // This block's own dynamic shared memory, exactly smem_bytes, so that an overrun is a
      // heap-buffer-overflow. Filled with garbage: shared memory starts undefined.
      b.smem_owner.reset(new unsigned char[smem_bytes]);
      b.smem = b.smem_owner.get();
      std::memset(b.smem, 0xA5, smem_bytes);
      run_block(b, rng);
    }
  } catch (const KernelError& e) {
    abandon(b);
    set_error(cudaErrorLaunchFailure, e.what());
  }
  g_block = nullptr;
}

}  // namespace cuda_harness

// ---- runtime API ------------------------------------------------------------------------------

cudaError_t cudaGetLastError() {
  const cudaError_t e = cuda_harness::g_pending;
  cuda_harness::g_pending = cudaSuccess;
  return e;
}

const char* cudaGetErrorString(cudaError_t e) {
  if (e == cudaSuccess) return "no error";
  // The harness's message of the last error (the runtime's strings are static too).
  static std::string text;
  text = "cuda_harness: " + cuda_harness::g_message;
  return text.c_str();
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return cudaErrorInvalidValue;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = cuda_harness::g_device.max_threads; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = cuda_harness::g_device.default_smem; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = cuda_harness::g_device.optin_smem; break;
    default: return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

// Test controls, for ctypes.
extern "C" void harness_set_seed(uint64_t seed) { cuda_harness::g_seed = seed; }
extern "C" void harness_set_optin_smem(int bytes) { cuda_harness::g_device.optin_smem = bytes; }
