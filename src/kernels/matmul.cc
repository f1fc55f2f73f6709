// matmul driver: operand checks, the plain reference, the portable scalar path and the dispatch to
// the AVX2 row kernels (matmul_avx2.cc). Work is split over output rows (of one weight, or of
// several that read the same x in matmul_fused); prefill blocks rows and tokens for the caches
// (rows_tiled).
#include "kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/dequantize.h"
#include "kernels/matmul_internal.h"

namespace gemmax {
namespace {

// Rows per parallel work unit: enough to amortise the chunk claim, small enough to balance; for
// panel prefills, the widest microkernel's row block.
constexpr int64_t kRowGrain = 16, kPanelRowGrain = 32;
static_assert(kRowGrain % detail::kKPanelRows == 0, "K panel row blocks straddle work units");

std::string describe(const TensorView& w) {
  return "tensor '" + w.name + "' (" + std::string(dtype_name(w.dtype)) + ", shape " +
         shape_string(w.shape) + ")";
}

bool format_supported(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ8_0:
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
    case DType::kQ5_0x4:
      return true;
    default:
      return false;
  }
}

// Throws, naming the tensor, unless the operands describe a well-formed product.
void check_operands(const char* fn, const float* x, int64_t n_tokens, const TensorView& w,
                    const float* y) {
  // The message is built only on failure: a decode step checks ~7 matmuls per layer, and
  // formatting the tensor's description each time cost ~0.5 us per call.
  const auto where = [&] { return std::string(fn) + ": " + describe(w); };
  if (n_tokens < 0) throw std::invalid_argument(where() + ": negative token count");
  for (int64_t d : w.shape) {
    if (d < 0) throw std::invalid_argument(where() + ": negative dimension");
  }
  if (!format_supported(w.dtype)) throw std::runtime_error(where() + ": unsupported weight format");
  const int64_t block = require_layout(w.dtype).block_size;
  if (w.cols() % block != 0) {
    throw std::runtime_error(where() + ": row length is not a multiple of the block size " +
                             std::to_string(block));
  }
  const int64_t need = w.rows() * w.row_bytes();
  if (static_cast<int64_t>(w.nbytes) < need || (need > 0 && w.data == nullptr)) {
    throw std::runtime_error(where() + ": holds " + std::to_string(w.nbytes) + " bytes, needs " +
                             std::to_string(need));
  }
  // x is only read when there are rows and columns, y only written when there are rows.
  if (n_tokens > 0 && w.rows() > 0 && ((x == nullptr && w.cols() > 0) || y == nullptr)) {
    throw std::invalid_argument(where() + ": null input or output");
  }
}

// Portable dot with 8 independent partial sums (shorter dependency chains, less rounding drift).
float dot_f32_scalar(const float* a, const float* b, int64_t k) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (; i < k; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Everything one row range needs; the parallel_for lambda captures only a pointer to it so
// std::function keeps it in its small buffer (no allocation per call).
struct Job {
  const float* x;
  int64_t n_tokens;
  const TensorView* w;
  float* y;
  bool avx2;
  detail::RowKernel kernel;
  const uint8_t* act;     // prepared activations (x itself when kernel.act is kF32)
  size_t act_stride;      // bytes between token rows of `act`
  int64_t row_bytes = 0;  // of w, computed once (TensorView::row() recomputes it per call)
  bool panels = false;    // act holds panel tiles (detail::pack_panel_tile) for panel_rows
  bool kpanels = false;   // the prefill runs kernel.kpanel over act
  const uint8_t* weight_row(int64_t r) const {
    return reinterpret_cast<const uint8_t*>(w->data) + r * row_bytes;
  }
};

// Rows without a specialised kernel: dequantize the row once, then f32 dots for every token.
void rows_dequantized(const Job& job, int64_t r0, int64_t r1) {
  thread_local std::vector<float> row_buf;
  const int64_t k = job.w->cols(), n_rows = job.w->rows();
  float* row = detail::scratch(row_buf, static_cast<size_t>(k));
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_row(job.w->dtype, job.w->row(r), row, k);
    for (int64_t t = 0; t < job.n_tokens; ++t) {
      const float* xt = job.x + t * k;
      job.y[t * n_rows + r] =
          job.avx2 ? detail::avx2_dot_f32(row, xt, k) : dot_f32_scalar(row, xt, k);
    }
  }
}

// Token rows [t0, t1) of weight rows [r0, r1) one token at a time: a GEMV per token when the
// format has one (decode, and prefill tokens left over from the tiles), else a dot per pair.
// job.act holds every token's activations (x itself for f32-activation formats).
void tokens_single(const Job& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int64_t k = job.w->cols(), n_rows = job.w->rows();
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* act = job.act + t * job.act_stride;
    if (job.kernel.rows != nullptr) {
      job.kernel.rows(job.weight_row(r0), static_cast<size_t>(job.row_bytes), r1 - r0, act, k,
                      job.y + t * n_rows + r0);
    } else {
      for (int64_t r = r0; r < r1; ++r)
        job.y[t * n_rows + r] = job.kernel.dot(job.weight_row(r), act, k);
    }
  }
}

// One tile call: `n_r` rows from r (tile_rows, or 1 with tokens_1row) x tile_tokens tokens from t,
// over the elements [k0, k1) of the rows (the whole rows unless the kernel sums them in spans).
void run_tile(const Job& job, int64_t r, int n_r, int64_t t, int64_t k0, int64_t k1) {
  const detail::RowKernel& kn = job.kernel;
  const int64_t n_rows = job.w->rows(), k = job.w->cols();
  const uint8_t* w = job.weight_row(r);
  const uint8_t* act = job.act + t * job.act_stride;
  float* out = job.y + t * n_rows + r;
  if (k0 == 0 && k1 == k) {
    const detail::TokensFn fn = n_r == kn.tile_rows ? kn.tokens : kn.tokens_1row;
    fn(w, static_cast<size_t>(job.row_bytes), act, job.act_stride, k, out,
       static_cast<size_t>(n_rows));
  } else {
    const detail::TokensSpanFn fn = n_r == kn.tile_rows ? kn.tokens_span : kn.tokens_span_1row;
    fn(w, static_cast<size_t>(job.row_bytes), act, job.act_stride, k0, k1, k, out,
       static_cast<size_t>(n_rows));
  }
}

// Prefill: each tile unpacks its weight rows once for tile_tokens tokens (and, for 16-bit weights,
// loads each activation once for tile_rows rows); leftover tokens go through tokens_single. Two
// levels of blocking: the row range is cut into pieces whose weights fit the L2 cache, and tokens
// into blocks whose prepared activations fit L1; every row of a piece passes over one token block
// before the next. Weights are then read from memory once per call (without the row pieces, a 16
// MB BF16 matrix was re-streamed from DRAM for every token block) and activations come from L1,
// instead of every token's activations coming from L2 for every row. Rows too long for one tile's
// activations to fit L1 (1B/4B FFN down projections: 3 tokens x 6912 f32 = 81 KB) are cut into
// passes of whole spans when the kernel sums rows in spans (RowKernel::span), so both limits hold
// per pass; the piece's weights for a pass stay in L2 while every token passes over them, and only
// the activations are re-read (from L3) once per piece. kernels_bench
// prefill512/BF16/1b_down_6912x1152 (best of 8-10 runs, with tile_bf16_pairs): 1 thread 165 ->
// 123-133 ms, 2 threads 85 -> 69 ms.
void rows_tiled(const Job& job, int64_t r0, int64_t r1) {
  constexpr int64_t kL1ActBytes = 24 << 10, kL2WeightBytes = 256 << 10;
  const detail::RowKernel& kn = job.kernel;
  const int64_t n_tok = job.n_tokens, k = job.w->cols();
  const int tile = kn.tile_tokens, tile_rows = kn.tile_rows;
  const int64_t full = n_tok / tile * tile;
  const auto act_stride = static_cast<int64_t>(job.act_stride);
  int64_t pass = k;  // elements per pass
  if (kn.span > 0 && tile * act_stride > kL1ActBytes) {
    const int64_t spans = kL1ActBytes * k / (tile * act_stride * kn.span);  // that fit L1
    pass = std::min(k, std::max<int64_t>(1, spans) * kn.span);
  }
  // Bytes of one token's activations and of one weight row within a pass (pro rata: a kernel
  // with spans has a fixed number of bytes per element on both sides; pass == k gives the rows').
  const int64_t act_bytes = act_stride * pass / k, row_bytes = job.row_bytes * pass / k;
  const int64_t block = std::max<int64_t>(tile, kL1ActBytes / act_bytes / tile * tile);
  const int64_t piece =
      std::max<int64_t>(tile_rows, kL2WeightBytes / row_bytes / tile_rows * tile_rows);
  for (int64_t p0 = r0; p0 < r1; p0 += piece) {
    const int64_t p1 = std::min(r1, p0 + piece);
    for (int64_t k0 = 0; k0 < k; k0 += pass) {
      const int64_t k1 = std::min(k, k0 + pass);
      for (int64_t t0 = 0; t0 < full; t0 += block) {
        const int64_t t1 = std::min(full, t0 + block);
        int64_t r = p0;
        for (; r + tile_rows <= p1; r += tile_rows)
          for (int64_t t = t0; t < t1; t += tile) run_tile(job, r, tile_rows, t, k0, k1);
        for (; r < p1; ++r)
          for (int64_t t = t0; t < t1; t += tile) run_tile(job, r, 1, t, k0, k1);
      }
    }
  }
  tokens_single(job, r0, r1, full, n_tok);
}

void rows_kernel(const Job& job, int64_t r0, int64_t r1) {
  if (job.kernel.tokens != nullptr && job.n_tokens >= job.kernel.tile_tokens) {
    rows_tiled(job, r0, r1);
  } else {
    tokens_single(job, r0, r1, 0, job.n_tokens);
  }
}

void run_rows(const Job& job, int64_t r0, int64_t r1) {
  if (job.panels) {
    detail::panel_rows(job.kernel.panel, job.kernel.panel_wide, job.kernel.panel_f16,
                       job.weight_row(r0), static_cast<size_t>(job.row_bytes), r1 - r0,
                       reinterpret_cast<const float*>(job.act), job.n_tokens, job.w->cols(),
                       job.y + r0, static_cast<size_t>(job.w->rows()));
  } else if (job.kpanels) {
    job.kernel.kpanel(job.weight_row(r0), static_cast<size_t>(job.row_bytes), r1 - r0, job.act,
                      job.act_stride, job.n_tokens, job.w->cols(), job.y + r0,
                      static_cast<size_t>(job.w->rows()));
  } else if (job.kernel.dot != nullptr) {
    rows_kernel(job, r0, r1);
  } else {
    rows_dequantized(job, r0, r1);
  }
}

KernelPath best_path() {
  return cpu_features().has_avx2_kernels() ? KernelPath::kAvx2 : KernelPath::kScalar;
}

KernelPath path_from_env() {
  const char* env = std::getenv("GEMMAX_KERNELS");
  const std::string_view v = env ? env : "auto";
  if (v == "auto" || v.empty()) return best_path();
  if (v == "scalar") return KernelPath::kScalar;
  if (v == "avx2") {
    if (!kernel_path_supported(KernelPath::kAvx2)) {
      throw std::runtime_error("GEMMAX_KERNELS=avx2 but this CPU lacks AVX2/FMA/F16C");
    }
    return KernelPath::kAvx2;
  }
  throw std::runtime_error("GEMMAX_KERNELS: unknown value '" + std::string(v) +
                           "' (expected scalar, avx2 or auto)");
}

// -1 until first use; then a KernelPath value.
std::atomic<int>& path_slot() {
  static std::atomic<int> slot{-1};
  return slot;
}

}  // namespace

bool kernel_path_supported(KernelPath path) {
  return path == KernelPath::kScalar || cpu_features().has_avx2_kernels();
}

const char* kernel_path_name(KernelPath path) {
  return path == KernelPath::kAvx2 ? "avx2" : "scalar";
}

KernelPath kernel_path() {
  int v = path_slot().load(std::memory_order_acquire);
  if (v < 0) {
    v = static_cast<int>(path_from_env());
    int expected = -1;
    // A concurrent set_kernel_path wins over the environment default.
    if (!path_slot().compare_exchange_strong(expected, v)) v = expected;
  }
  return static_cast<KernelPath>(v);
}

void set_kernel_path(KernelPath path) {
  if (!kernel_path_supported(path)) {
    throw std::runtime_error(std::string("kernel path ") + kernel_path_name(path) +
                             " is not supported by this CPU");
  }
  path_slot().store(static_cast<int>(path), std::memory_order_release);
}

float dot_f32(const float* a, const float* b, int64_t n) {
  return kernel_path() == KernelPath::kAvx2 ? detail::avx2_dot_f32(a, b, n)
                                            : dot_f32_scalar(a, b, n);
}

void matmul_reference(const float* x, int64_t n_tokens, const TensorView& w, float* y) {
  check_operands("matmul_reference", x, n_tokens, w, y);
  const int64_t k = w.cols(), n_rows = w.rows();
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t r = 0; r < n_rows; ++r) {
    dequantize_row(w.dtype, w.row(r), row.data(), k);
    for (int64_t t = 0; t < n_tokens; ++t) {
      double acc = 0.0;  // double: the reference should not carry f32 summation error
      for (int64_t i = 0; i < k; ++i) acc += static_cast<double>(x[t * k + i]) * row[i];
      y[t * n_rows + r] = static_cast<float>(acc);
    }
  }
}

namespace {

// The products of one matmul_fused call; the parallel_for lambda captures only a pointer to it.
struct FusedJob {
  static constexpr size_t kMaxOutputs = 4;
  Job jobs[kMaxOutputs];
  int64_t first_row[kMaxOutputs + 1];  // rows of all weights, concatenated
  size_t n = 0;
  void run(int64_t g0, int64_t g1) const {
    for (size_t i = 0; i < n; ++i) {
      const int64_t lo = std::max(g0, first_row[i]), hi = std::min(g1, first_row[i + 1]);
      if (lo < hi) run_rows(jobs[i], lo - first_row[i], hi - first_row[i]);
    }
  }
};

// Quantizes the n_tokens rows of x into format f once per call (split over tokens for prefill);
// one buffer per format, per calling thread, that only grows.
const uint8_t* prepare_activations(detail::ActFormat f, const float* x, int64_t n_tokens, int64_t k,
                                   ThreadPool* pool, size_t* stride) {
  thread_local std::vector<uint8_t> bufs[detail::kActFormats];
  *stride = detail::act_row_bytes(f, k);
  const size_t row_bytes = *stride;
  // On a 64-byte boundary, so that 32-byte loads of f32 activations never split a cache line (a
  // vector's buffer is only 16-byte aligned).
  constexpr size_t kAlign = 64;
  uint8_t* raw = detail::scratch(bufs[static_cast<int>(f)],
                                 row_bytes * static_cast<size_t>(n_tokens) + kAlign);
  uint8_t* act = raw + (kAlign - reinterpret_cast<uintptr_t>(raw) % kAlign) % kAlign;
  const auto quantize_tokens = [=](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      detail::quantize_act_row(f, x + t * k, k, act + t * row_bytes);
  };
  if (pool != nullptr && n_tokens > 1) {
    pool->parallel_for(n_tokens, 1, quantize_tokens);
  } else {
    quantize_tokens(0, n_tokens);
  }
  return act;
}

// Prefills of at least this many tokens take a kernel's panel GEMM when it has one: packing a
// row block's weights costs about what 6-12 tokens of FMAs do.
constexpr int64_t kPanelMinTokens = 16;

// The vdpbf16ps kernels have no row tiles: every prefill of two tokens or more takes their panels
// (the same bits as their GEMV).
bool use_panels(const detail::RowKernel& kn, int64_t n_tokens, int64_t k) {
  const int64_t min_tokens = kn.panel == detail::PanelScheme::kDot32 ? 2 : kPanelMinTokens;
  return n_tokens >= min_tokens && detail::panel_supported(kn.panel, k);
}

// Packs the n_tokens rows of x into panel tiles of scheme s once per call (split over tiles); one
// buffer per scheme, per calling thread, that only grows.
const uint8_t* prepare_panels(detail::PanelScheme s, bool wide, const float* x, int64_t n_tokens,
                              int64_t k, ThreadPool* pool) {
  thread_local std::vector<float> bufs[detail::kPanelSchemes];
  const int64_t tile = detail::panel_tile_tokens(wide);
  float* out = detail::scratch(bufs[static_cast<int>(s)],
                               detail::panel_act_floats(s, n_tokens, k, static_cast<int>(tile)));
  const size_t tile_floats = detail::panel_tile_floats(s, static_cast<int>(tile), k);
  const auto pack_tiles = [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int n_valid = static_cast<int>(std::min(tile, n_tokens - i * tile));
      detail::pack_panel_tile(s, static_cast<int>(tile), x + i * tile * k, k, n_valid,
                              out + i * tile_floats);
    }
  };
  const int64_t tiles = (n_tokens + tile - 1) / tile;
  if (pool != nullptr && tiles > 1) {
    pool->parallel_for(tiles, 1, pack_tiles);
  } else {
    pack_tiles(0, tiles);
  }
  return reinterpret_cast<const uint8_t*>(out);
}

// A decode step's GEMV chunks: one big chunk per thread, kDecodeBigShare of the rows between them,
// then the rest in (kMaxChunksPerThread - 1) small chunks per thread, each half the one before,
// claimed by whichever thread is free. Returns chunk c's first unit (c <= n_chunks; chunk n_chunks
// starts at `units`).
//
// Why: with one chunk per thread (session 14; more equal chunks had cost more in cold stream
// starts than they gained), the two threads of a decode GEMV finished on average 19 us (1B Q4_0,
// 9% of a 207 us call) and 61 us (4B Q4_0, of 645 us) apart, either of them last (timers around
// the calls, 16 + 32 tokens): their share of the memory bandwidth varies. Whole decodes, 2
// threads, interleaved pairs of one binary: 270M Q4_0 183-185 -> 193-194 tok/s, 1B Q8_0 21.2-21.9
// -> 22.6-23.3, 4B Q4_0 10.9 -> 11.6-11.8, 1B BF16 12.2 -> 12.8; 270M Q8_0 +1-2%; 4B Q4_K_M
// unchanged (its GEMV waits on its arithmetic). A big share of 0.7 and 0.9 measured no better.
// Equal small chunks (session 16) still left the threads a small chunk apart at the end (timers
// per chunk, 1B Q4_0, 16 + 64 tokens: gate+up 10-12 us of a 300 us call, the LM head 165 us);
// halving sizes: 6-7 and 47-64 us.
constexpr double kDecodeBigShare = 0.8;

int64_t decode_chunk_start(int64_t c, int64_t units, int64_t threads, int64_t n_chunks) {
  const auto per_big = static_cast<int64_t>(static_cast<double>(units) * kDecodeBigShare /
                                            static_cast<double>(threads));
  if (c <= threads) return c * per_big;
  const int64_t rest = units - threads * per_big;
  // Small chunk i (from 0) covers rest / 2^(i+1), the last two the same, so the threads finish at
  // most one short chunk apart.
  return threads * per_big + (c >= n_chunks ? rest : rest - (rest >> (c - threads)));
}

}  // namespace

void matmul_fused(const float* x, int64_t n_tokens, std::span<const MatmulOutput> outputs,
                  ThreadPool* pool) {
  if (outputs.size() > FusedJob::kMaxOutputs)
    throw std::invalid_argument("matmul_fused: at most 4 outputs, got " +
                                std::to_string(outputs.size()));
  FusedJob fused;
  fused.first_row[0] = 0;
  const bool avx2 = kernel_path() == KernelPath::kAvx2;
  const uint8_t* acts[detail::kActFormats] = {};
  size_t strides[detail::kActFormats] = {};
  const uint8_t* panel_acts[detail::kPanelSchemes] = {};
  for (const MatmulOutput& o : outputs) {
    check_operands("matmul", x, n_tokens, *o.w, o.y);
    if (o.w->cols() != outputs[0].w->cols())
      throw std::invalid_argument(
          "matmul_fused: " + describe(*o.w) + " has " + std::to_string(o.w->cols()) + " columns, " +
          describe(*outputs[0].w) + " has " + std::to_string(outputs[0].w->cols()));
    Job& job = fused.jobs[fused.n];
    job = Job{x, n_tokens, o.w, o.y, avx2, {}, nullptr, 0, o.w->row_bytes()};
    if (avx2) job.kernel = detail::avx2_row_kernel(o.w->dtype, o.w->cols(), o.w->rows());
    const auto f = job.kernel.act;
    if (avx2 && o.w->rows() > 0 && use_panels(job.kernel, n_tokens, o.w->cols())) {
      const auto slot = static_cast<int>(job.kernel.panel);
      if (panel_acts[slot] == nullptr)
        panel_acts[slot] =
            prepare_panels(job.kernel.panel, job.kernel.panel_wide, x, n_tokens, o.w->cols(), pool);
      job.act = panel_acts[slot];
      job.panels = true;
    } else if (f == detail::ActFormat::kF32) {  // f32 activations are used as they are
      job.act = reinterpret_cast<const uint8_t*>(x);
      job.act_stride = static_cast<size_t>(o.w->cols()) * sizeof(float);
    } else if (job.kernel.dot != nullptr && n_tokens > 0 && o.w->rows() > 0) {
      const int slot = static_cast<int>(f);
      if (acts[slot] == nullptr)
        acts[slot] = prepare_activations(f, x, n_tokens, o.w->cols(), pool, &strides[slot]);
      job.act = acts[slot];
      job.act_stride = strides[slot];
      job.kpanels = job.kernel.kpanel != nullptr && n_tokens >= job.kernel.kpanel_min_tokens;
    }
    fused.first_row[fused.n + 1] = fused.first_row[fused.n] + o.w->rows();
    ++fused.n;
  }
  const int64_t total = fused.first_row[fused.n];
  if (n_tokens == 0 || total == 0) return;
  if (pool == nullptr) {
    fused.run(0, total);
  } else {
    // Panel prefills split at whole row blocks (32 rows for the AVX-512 microkernel): 16-row
    // chunks left a half-empty block in many a chunk (the 270M's 640-row down projection: 80 rows
    // per chunk, computed as 96).
    bool panels = false;
    for (size_t i = 0; i < fused.n; ++i) panels = panels || fused.jobs[i].panels;
    const int64_t grain = panels ? kPanelRowGrain : kRowGrain;
    // A decode step's GEMVs take one big share of the rows per thread and balance the rest in
    // small chunks (decode_chunk_start): every chunk start is several streams whose first 4 KiB
    // no prefetch asked for, and a claim. Against 4 equal chunks per thread (session 14): 270M
    // Q4_0 178-185 -> 194-198 tok/s with one chunk per thread. Matrices of fewer than 8 units
    // per chunk keep one even chunk per thread (4 until session 18; 8 moved the 270M's 640-row
    // o and down projections back to even halves: 270M Q4_0 +0-2% in 6 of 6 interleaved pairs,
    // Q8_0 +0.4-7% in 4 of 4, BF16 -2 to +1%); prefills keep 4 equal chunks per thread.
    const int threads = pool->size();
    const int n_chunks = threads * ThreadPool::kMaxChunksPerThread;
    const int64_t units = (total + grain - 1) / grain;
    if (n_tokens == 1 && threads > 1 && units >= 8 * n_chunks) {
      const auto row_of = [=](int64_t c) {
        return std::min(total, decode_chunk_start(c, units, threads, n_chunks) * grain);
      };
      pool->parallel_for(
          n_chunks, 1,
          [&fused, row_of](int64_t c0, int64_t c1) { fused.run(row_of(c0), row_of(c1)); },
          ThreadPool::kMaxChunksPerThread);
      return;
    }
    const int chunks_per_thread = n_tokens == 1 ? 1 : ThreadPool::kMaxChunksPerThread;
    pool->parallel_for(
        total, grain, [&fused](int64_t r0, int64_t r1) { fused.run(r0, r1); }, chunks_per_thread);
  }
}

void matmul(const float* x, int64_t n_tokens, const TensorView& w, float* y, ThreadPool* pool) {
  const MatmulOutput out{&w, y};
  matmul_fused(x, n_tokens, std::span<const MatmulOutput>(&out, 1), pool);
}

}  // namespace gemmax
