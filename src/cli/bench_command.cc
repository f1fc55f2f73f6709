// gemmax bench: end-to-end speed of one checkpoint (prefill and batch-1 decode tokens/s, load time,
// peak RSS, weight bytes read per decoded token) and a memory read-bandwidth probe that turns those
// bytes into the decode speed the memory system allows.
#include <fmt/core.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <stdexcept>
#include <vector>

#include "cli/commands.h"
#include "cli/loaded_model.h"
#include "kernels/thread_pool.h"
#include "tensor/huge_page_buffer.h"
#include "tokenizer/loader.h"

namespace gemmax::cli {
namespace {

struct BenchOptions {
  std::string model;
  int prompt_tokens = 512;
  int gen_tokens = 128;
  int threads = 0;
  int repeat = 3;
  bool json = false;
  bool bandwidth = false;
  int bandwidth_mib = 512;
  uint32_t seed = 1;
  bool warmup = true;
  std::string kv_dtype = "f16";
  bool profile = false;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // Linux reports kilobytes
}

int64_t tensor_bytes(const TensorView& t) { return t.rows() * t.row_bytes(); }

// Bytes of weights one decode step must stream from memory: every projection of every layer, the
// LM head and one embedding row. Norm vectors are a few KB and stay in cache.
int64_t weight_bytes_per_token(const Gemma3Weights& w) {
  int64_t total = tensor_bytes(w.lm_head) + w.embed_tokens.row_bytes();
  for (const Gemma3LayerWeights& l : w.layers) {
    for (const TensorView* t :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
      total += tensor_bytes(*t);
  }
  return total;
}

// Bytes of K and V one decode step reads, averaged over the `gen` steps that follow a
// `prompt`-token prefill: the step at position p reads p + 1 cached positions per layer (at most
// the window on sliding layers), K and V of every KV head. The decode bound counts these
// with the weights.
int64_t kv_bytes_per_token(const Gemma3Config& c, DType kv_dtype, int prompt, int gen) {
  const int64_t per_position = 2 * c.num_key_value_heads * dtype_row_bytes(kv_dtype, c.head_dim);
  int64_t total = 0;
  for (int64_t p = prompt; p < prompt + gen; ++p)
    for (int layer = 0; layer < c.num_hidden_layers; ++layer)
      total += per_position *
               (c.layer_is_sliding[layer] ? std::min<int64_t>(p + 1, c.sliding_window) : p + 1);
  return total / gen;
}

struct RunResult {
  double prefill_tps = 0, decode_tps = 0;
};

// One prefill of `prompt_tokens` random ids (in one step, like llama.cpp's batch) followed by
// `gen_tokens` single-token decode steps, each fed a random id (the speed does not depend on
// which).
RunResult run_once(Gemma3Model& model, const BenchOptions& o, DType kv_dtype, std::mt19937& rng,
                   StepProfile* prefill_profile = nullptr, StepProfile* decode_profile = nullptr) {
  const Gemma3Config& cfg = model.config();
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(cfg.vocab_size - 1));
  PagedKVCache cache = single_sequence_cache(model, o.prompt_tokens + o.gen_tokens, kv_dtype);
  const SeqId seq = cache.add_sequence();
  std::vector<int32_t> prompt(o.prompt_tokens);
  for (int32_t& t : prompt) t = id(rng);
  RunResult r;
  Gemma3Inputs in;
  in.add_row(seq, prompt);
  model.set_profile(prefill_profile);
  auto start = Clock::now();
  model.execute(in, cache);
  r.prefill_tps = o.prompt_tokens / seconds_since(start);
  model.set_profile(decode_profile);
  start = Clock::now();
  Gemma3Outputs out;  // reused: as a decode loop (and llama.cpp's context) keeps its logits
  for (int i = 0; i < o.gen_tokens; ++i) {
    Gemma3Inputs step;
    step.add_row(seq, {id(rng)});
    model.execute(step, cache, out);
  }
  r.decode_tps = o.gen_tokens / seconds_since(start);
  model.set_profile(nullptr);
  return r;
}

// {phase name: fields(phase)} for every phase.
template <class Fields>
nlohmann::json phases_json(Fields fields) {
  nlohmann::json phases = nlohmann::json::object();
  for (int i = 0; i < StepProfile::kPhases; ++i) {
    const auto phase = static_cast<StepPhase>(i);
    phases[StepProfile::name(phase)] = fields(phase);
  }
  return phases;
}

// --profile: the decode steps' time per phase (per token), the matmul phases' weight bytes and
// attention's K/V bytes with their rates, the time outside the weight-streaming matmuls, and what
// of it the K/V bytes do not explain at the matmuls' rate (the fixed per-token cost).
nlohmann::json profile_json(const StepProfile& p) {
  const nlohmann::json phases = phases_json([&](StepPhase phase) -> nlohmann::json {
    return {{"seconds_per_token", p.seconds_per_step(phase)},
            {"bytes_read_per_token", static_cast<int64_t>(p.bytes_per_step(phase))}};
  });
  return {{"steps", p.steps},
          {"seconds_per_token", p.total_seconds() / static_cast<double>(p.steps)},
          {"outside_matmuls_seconds_per_token", p.outside_matmuls_seconds_per_step()},
          {"matmul_bytes_per_second", p.matmul_bytes_per_second()},
          {"fixed_seconds_per_token", p.fixed_seconds_per_step()},
          {"phases", phases}};
}

// The prefill's phases: ms per prefill, share, and for the matmuls and attention the multiply-adds
// per second (the figure to set against the machine's peak, bench/peak_rate_bench). Bytes per
// second would mislead there (a prefill reuses each weight byte for every token).
nlohmann::json prefill_profile_json(const StepProfile& p) {
  const nlohmann::json phases = phases_json([&](StepPhase phase) -> nlohmann::json {
    return {{"seconds_per_prefill", p.seconds_per_step(phase)},
            {"multiply_adds_per_second", p.multiply_adds_per_second(phase)}};
  });
  return {{"prefills", p.steps},
          {"seconds_per_prefill", p.total_seconds() / static_cast<double>(p.steps)},
          {"phases", phases}};
}

void print_prefill_profile(const StepProfile& p, int prompt_tokens) {
  const double total = p.total_seconds() / static_cast<double>(p.steps);
  fmt::print(
      "prefill profile ({} prefills of {} tokens; ms per prefill, share, multiply-adds per "
      "second):\n",
      p.steps, prompt_tokens);
  for (int i = 0; i < StepProfile::kPhases; ++i) {
    const auto phase = static_cast<StepPhase>(i);
    const double sec = p.seconds_per_step(phase), rate = p.multiply_adds_per_second(phase);
    fmt::print("  {:<13} {:8.2f} ms {:5.1f}%", StepProfile::name(phase), sec * 1e3,
               100 * sec / total);
    if (rate > 0) fmt::print("  {:7.1f} GMAC/s", rate / 1e9);
    fmt::print("\n");
  }
  fmt::print("  total         {:8.2f} ms\n", total * 1e3);
}

void print_profile(const StepProfile& p) {
  const double total = p.total_seconds() / static_cast<double>(p.steps);
  fmt::print(
      "decode profile ({} steps; ms per token, share, bytes read (weights; K/V for "
      "attention), rate):\n",
      p.steps);
  for (int i = 0; i < StepProfile::kPhases; ++i) {
    const auto phase = static_cast<StepPhase>(i);
    const double sec = p.seconds_per_step(phase), bytes = p.bytes_per_step(phase);
    fmt::print("  {:<13} {:8.3f} ms {:5.1f}%", StepProfile::name(phase), sec * 1e3,
               100 * sec / total);
    if (bytes > 0) fmt::print("  {:8.1f} MB  {:5.1f} GB/s", bytes / 1e6, bytes / sec / 1e9);
    fmt::print("\n");
  }
  fmt::print("  total         {:8.3f} ms; outside the matmuls {:.3f} ms per token\n", total * 1e3,
             p.outside_matmuls_seconds_per_step() * 1e3);
  fmt::print(
      "  fixed         {:8.3f} ms per token: outside the matmuls less the K/V reads at the "
      "matmuls' {:.1f} GB/s\n",
      p.fixed_seconds_per_step() * 1e3, p.matmul_bytes_per_second() / 1e9);
}

// ---- memory bandwidth probe ----

// Sums 64-bit words, one 64-byte line per iteration in four independent 16-byte accumulators
// (SSE2, the x86-64 baseline), so the loop is limited by loads, not adds. Like the matmul kernels
// it asks for the line 4 KiB ahead: with the hardware prefetcher alone the probe read ~20% less
// than the LM head GEMV then did, so it understated the machine's bandwidth.
uint64_t sum_words(const uint64_t* p, int64_t n) {
  using V = uint64_t __attribute__((vector_size(16)));
  V a = {0, 0}, b = a, c = a, d = a;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __builtin_prefetch(p + i + 512);
    V x[4];
    std::memcpy(x, p + i, sizeof x);
    a += x[0];
    b += x[1];
    c += x[2];
    d += x[3];
  }
  const V s = a + b + c + d;
  uint64_t total = s[0] + s[1];
  for (; i < n; ++i) total += p[i];
  return total;
}

// Best-of-5 read bandwidth (bytes/s) over `buf` with `threads` threads, each reading a contiguous
// slice. The buffer is far larger than any cache, so this is DRAM bandwidth.
double read_bandwidth(std::span<const uint64_t> buf, int threads) {
  ThreadPool pool(threads);
  const int64_t n = static_cast<int64_t>(buf.size());
  std::vector<uint64_t> sums(threads, 0);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto start = Clock::now();
    pool.parallel_for(threads, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        sums[t] += sum_words(buf.data() + t * n / threads, n / threads);
    });
    best = std::max(best, static_cast<double>(n * 8) / seconds_since(start));
  }
  // Keep the sums observable so the reads cannot be optimised away.
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  if (total == 42) fmt::print("");
  return best;
}

void run_bandwidth(const BenchOptions& o) {
  if (o.bandwidth_mib < 64) throw std::invalid_argument("--bandwidth-mib must be at least 64");
  const int threads = o.threads > 0 ? o.threads : ThreadPool(0).size();
  // The weights are mapped on 2 MiB pages where the kernel gives them (io/mapped_file.cc), so the
  // probe reads such pages too: on 4 KiB pages it read ~5% less, which would have put the bound
  // below what the GEMV can stream.
  const size_t words = static_cast<size_t>(o.bandwidth_mib) << 17;
  const HugePageBuffer mem(words * sizeof(uint64_t));
  const std::span<uint64_t> buf(reinterpret_cast<uint64_t*>(mem.data()), words);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = i;  // touch every page before timing
  const double bw1 = read_bandwidth(buf, 1), bwn = read_bandwidth(buf, threads);
  nlohmann::json j{
      {"read_bytes_per_s_1_thread", bw1}, {"read_bytes_per_s", bwn}, {"threads", threads}};
  int64_t per_token = 0, kv_per_token = 0;
  if (!o.model.empty()) {
    const DType kv_dtype = parse_kv_dtype(o.kv_dtype);
    LoadedModel m = load_model(o.model, 1, false);
    per_token = weight_bytes_per_token(m.checkpoint->weights());
    kv_per_token = kv_bytes_per_token(m.model->config(), kv_dtype, o.prompt_tokens, o.gen_tokens);
    j["weight_bytes_per_token"] = per_token;
    j["kv_bytes_per_token"] = kv_per_token;
    j["decode_bound_tokens_per_s"] = bwn / static_cast<double>(per_token + kv_per_token);
  }
  if (o.json) {
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("read bandwidth: {:.2f} GB/s (1 thread), {:.2f} GB/s ({} threads)\n", bw1 / 1e9,
             bwn / 1e9, threads);
  if (per_token > 0)
    fmt::print(
        "per decoded token: {:.1f} MB of weights + {:.1f} MB of {} KV ({} + {} tokens) -> decode "
        "bound {:.1f} tokens/s\n",
        per_token / 1e6, kv_per_token / 1e6, o.kv_dtype, o.prompt_tokens, o.gen_tokens,
        bwn / static_cast<double>(per_token + kv_per_token));
}

// The tokenizer's load, timed apart from the model's: the runs feed random ids and need none, but
// `gemmax generate` pays it on top of load_seconds, and llama.cpp's load and RSS include its
// vocabulary. Loaded after the runs, so peak_rss_bytes stays the model's alone.
struct TokenizerLoad {
  double seconds = -1;  // -1: the checkpoint has no tokenizer this loader reads
  int64_t peak_rss_bytes = -1;
};

TokenizerLoad time_tokenizer_load(const std::string& path) {
  TokenizerLoad r;
  const auto start = Clock::now();
  try {
    const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(path);
    r.seconds = seconds_since(start);
    r.peak_rss_bytes = peak_rss_bytes();
  } catch (const TokenizerError&) {
    // A checkpoint without a tokenizer this loader reads (an HF directory without
    // tokenizer.json): the fields stay -1. Anything else is a real failure and propagates.
  }
  return r;
}

void run_model(const BenchOptions& o) {
  if (o.prompt_tokens < 1 || o.gen_tokens < 1 || o.repeat < 1)
    throw std::invalid_argument("--prompt-tokens, --gen-tokens and --repeat must be at least 1");
  const DType kv_dtype = parse_kv_dtype(o.kv_dtype);  // before the model loads: fail fast
  LoadedModel m = load_model(o.model, o.threads, false);
  if (o.prompt_tokens + o.gen_tokens > m.model->config().max_position_embeddings)
    throw std::invalid_argument("--prompt-tokens + --gen-tokens exceed the model's context");
  std::mt19937 rng(o.seed);
  if (o.warmup) {  // untimed: first-touch of the weights and scratch buffers
    BenchOptions w = o;
    w.prompt_tokens = std::min(16, o.prompt_tokens);
    w.gen_tokens = std::min(4, o.gen_tokens);
    run_once(*m.model, w, kv_dtype, rng);
  }
  std::vector<double> prefill, decode;
  StepProfile prefill_profile, profile;
  for (int i = 0; i < o.repeat; ++i) {
    const RunResult r = run_once(*m.model, o, kv_dtype, rng, o.profile ? &prefill_profile : nullptr,
                                 o.profile ? &profile : nullptr);
    prefill.push_back(r.prefill_tps);
    decode.push_back(r.decode_tps);
  }
  const int64_t peak_rss = peak_rss_bytes();
  const TokenizerLoad tok = time_tokenizer_load(m.checkpoint->path());
  const int64_t per_token = weight_bytes_per_token(m.checkpoint->weights());
  const int64_t kv_per_token =
      kv_bytes_per_token(m.model->config(), kv_dtype, o.prompt_tokens, o.gen_tokens);
  nlohmann::json j{{"model", m.checkpoint->path()},
                   {"threads", o.threads > 0 ? o.threads : ThreadPool(0).size()},
                   {"prompt_tokens", o.prompt_tokens},
                   {"gen_tokens", o.gen_tokens},
                   {"repeat", o.repeat},
                   {"prefill_tokens_per_s", median(prefill)},
                   {"decode_tokens_per_s", median(decode)},
                   {"prefill_runs", prefill},
                   {"decode_runs", decode},
                   {"peak_rss_bytes", peak_rss},
                   {"load_seconds", m.load_seconds},
                   {"tokenizer_load_seconds", tok.seconds},
                   {"peak_rss_with_tokenizer_bytes", tok.peak_rss_bytes},
                   {"weight_bytes_per_token", per_token},
                   {"kv_bytes_per_token", kv_per_token},
                   {"kv_dtype", o.kv_dtype}};
  if (o.profile) {
    j["prefill_profile"] = prefill_profile_json(prefill_profile);
    j["decode_profile"] = profile_json(profile);
  }
  if (o.json) {
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("prefill: {:.1f} tokens/s ({} tokens, median of {})\n", median(prefill),
             o.prompt_tokens, o.repeat);
  fmt::print("decode:  {:.2f} tokens/s ({} tokens, median of {})\n", median(decode), o.gen_tokens,
             o.repeat);
  fmt::print("load: {:.3f} s, peak RSS: {:.1f} MiB\n", m.load_seconds, peak_rss / 1048576.0);
  if (tok.seconds >= 0)
    fmt::print("tokenizer (not part of the runs): load {:.3f} s, peak RSS with it {:.1f} MiB\n",
               tok.seconds, tok.peak_rss_bytes / 1048576.0);
  fmt::print("read per decoded token: {:.1f} MB of weights + {:.1f} MB of {} KV cache (mean)\n",
             per_token / 1e6, kv_per_token / 1e6, o.kv_dtype);
  if (o.profile) {
    print_prefill_profile(prefill_profile, o.prompt_tokens);
    print_profile(profile);
  }
}

}  // namespace

void register_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure prefill/decode speed or memory bandwidth");
  cmd->add_option("--model", o->model,
                  "HF directory or .gguf file (default: the Gemma 3 270M GGUF)");
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "Prefill length")->capture_default_str();
  cmd->add_option("--gen-tokens", o->gen_tokens, "Decode steps")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--repeat", o->repeat, "Runs; the median is reported")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the random token ids")->capture_default_str();
  cmd->add_option("--kv-dtype", o->kv_dtype,
                  "KV cache element type: f16 (as llama.cpp), f32 (the exact reference) or bf16")
      ->capture_default_str();
  cmd->add_flag("!--no-warmup", o->warmup, "Skip the untimed warm-up run");
  cmd->add_flag("--json", o->json, "Print one JSON object");
  cmd->add_flag("--profile", o->profile,
                "Also time the decode steps phase by phase (a clock read per phase)");
  cmd->add_flag("--bandwidth", o->bandwidth,
                "Measure memory read bandwidth instead (with --model: also the decode bound)");
  cmd->add_option("--bandwidth-mib", o->bandwidth_mib, "Probe buffer size")->capture_default_str();
  cmd->callback([o] { o->bandwidth ? run_bandwidth(*o) : run_model(*o); });
}

}  // namespace gemmax::cli
