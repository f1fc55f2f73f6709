// gemmax info: the parsed config, the tensor formats and what a sequence costs in KV cache.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "io/gguf_reader.h"
#include "kv_cache/paged_kv_cache.h"
#include "model/default_model.h"
#include "model/gemma3_model.h"

namespace gemmax::cli {
namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
  bool tensors = false;
};

nlohmann::json describe(const Gemma3Checkpoint& ckpt, bool list_tensors) {
  nlohmann::json j;
  j["path"] = ckpt.path();
  j["format"] = ckpt.is_gguf() ? "gguf v" + std::to_string(ckpt.gguf()->version()) : "safetensors";
  j["config"] = ckpt.config().to_json();
  std::map<std::string, int> formats;
  int64_t bytes = 0;
  nlohmann::json list = nlohmann::json::array();
  for (const TensorView& t : ckpt.tensor_list()) {
    ++formats[std::string(dtype_name(t.dtype))];
    bytes += static_cast<int64_t>(t.nbytes);
    if (list_tensors)
      list.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}});
  }
  j["tensor_count"] = ckpt.tensor_list().size();
  j["tensor_formats"] = formats;
  j["tensor_bytes"] = bytes;
  if (list_tensors) j["tensors"] = list;
  Gemma3Model model(ckpt.config(), ckpt.weights(), 1);
  nlohmann::json kv;
  for (DType d : {DType::kF32, DType::kBF16}) {
    for (int64_t len : {int64_t{512}, int64_t{4096}, ckpt.config().max_position_embeddings}) {
      kv[std::string(dtype_name(d))][std::to_string(len)] =
          PagedKVCache::kv_bytes_for_length(model.kv_params(d), len);
    }
  }
  j["kv_bytes_per_sequence"] = kv;
  return j;
}

void print_human(const nlohmann::json& j) {
  fmt::print("model:   {}\nformat:  {}\n", j["path"].get<std::string>(),
             j["format"].get<std::string>());
  fmt::print("tensors: {} ({:.1f} MiB):", j["tensor_count"].get<int>(),
             j["tensor_bytes"].get<double>() / (1 << 20));
  for (const auto& [name, count] : j["tensor_formats"].items())
    fmt::print(" {} x{}", name, count.get<int>());
  fmt::print("\nKV cache bytes per sequence: {}\n", j["kv_bytes_per_sequence"].dump());
  fmt::print("config:\n{}\n", j["config"].dump(2));
  if (j.contains("tensors"))
    for (const auto& t : j["tensors"])
      fmt::print("  {:40} {:6} {}\n", t["name"].get<std::string>(), t["dtype"].get<std::string>(),
                 t["shape"].dump());
}

}  // namespace

void register_info_command(CLI::App& app) {
  auto opts = std::make_shared<InfoOptions>();
  CLI::App* cmd =
      app.add_subcommand("info", "Print a model's config, tensor formats and KV cache cost");
  cmd->add_option("--model", opts->model,
                  "HF directory or .gguf file (default: the Gemma 3 270M GGUF)");
  cmd->add_flag("--json", opts->json, "Print one JSON object");
  cmd->add_flag("--tensors", opts->tensors, "List every tensor");
  cmd->callback([opts] {
    auto ckpt = Gemma3Checkpoint::open(resolve_model_path(opts->model));
    const nlohmann::json j = describe(*ckpt, opts->tensors);
    if (opts->json) {
      fmt::print("{}\n", j.dump());
    } else {
      print_human(j);
    }
  });
}

}  // namespace gemmax::cli
