// tokenizer.json -> TokenizerSpec. Only what Gemma 3's tokenizer.json uses is accepted (BPE with
// byte fallback, normalizer Replace " " -> "▁", pre-tokenizer absent or a Split on " "); anything
// else is rejected by name rather than tokenized differently from the reference.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/loader.h"
#include "tokenizer/vocabulary.h"

namespace gemmax {

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw TokenizerError(path + ": " + what);
}

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::exception& e) {
    fail(path, std::string("not valid JSON: ") + e.what());
  }
}

// Token fields in tokenizer_config.json are a string or {"content": ...}.
std::optional<std::string> token_field(const json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return std::nullopt;
}

bool is_space_replace(const json& n) {
  return n.is_object() && n.value("type", "") == "Replace" && n.contains("pattern") &&
         n["pattern"].is_object() && n["pattern"].value("String", "") == " " &&
         n.value("content", "") == "\xE2\x96\x81";
}

void check_normalizer(const std::string& path, const json& root) {
  const json n = root.value("normalizer", json());
  if (is_space_replace(n)) return;
  if (n.is_object() && n.value("type", "") == "Sequence" && n.contains("normalizers") &&
      n["normalizers"].size() == 1 && is_space_replace(n["normalizers"][0]))
    return;
  fail(path, "unsupported normalizer " + n.dump() + " (only Replace \" \" -> \"\xE2\x96\x81\")");
}

void check_pre_tokenizer(const std::string& path, const json& root) {
  const json p = root.value("pre_tokenizer", json());
  // After the normalizer no " " is left, so a Split on " " never splits.
  if (p.is_null() || (p.is_object() && p.value("type", "") == "Split" && p.contains("pattern") &&
                      p["pattern"].is_object() && p["pattern"].value("String", "") == " "))
    return;
  fail(path, "unsupported pre_tokenizer " + p.dump());
}

void check_model(const std::string& path, const json& model) {
  if (model.value("type", "") != "BPE") fail(path, "model.type must be \"BPE\"");
  if (!model.value("byte_fallback", false)) fail(path, "model.byte_fallback must be true");
  if (model.value("ignore_merges", false)) fail(path, "model.ignore_merges=true is not supported");
  for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null())
      fail(path, std::string("model.") + key + " is not supported");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail(path, "model.vocab missing");
  if (!model.contains("merges") || !model["merges"].is_array()) fail(path, "model.merges missing");
}

void read_vocab(const std::string& path, const json& vocab, TokenizerSpec& spec) {
  spec.tokens.resize(vocab.size());
  std::vector<uint8_t> seen(vocab.size(), 0);
  for (const auto& [text, id_json] : vocab.items()) {
    const int64_t id = id_json.is_number_integer() ? id_json.get<int64_t>() : -1;
    if (id < 0 || static_cast<size_t>(id) >= seen.size() || seen[static_cast<size_t>(id)])
      fail(path, "model.vocab id of \"" + text + "\" is not a unique id below the vocab size");
    seen[static_cast<size_t>(id)] = 1;
    spec.tokens[static_cast<size_t>(id)] = text;
  }
  spec.model_vocab_size = spec.tokens.size();
}

void read_merges(const std::string& path, const json& merges, TokenizerSpec& spec) {
  const Vocabulary id_of(spec.tokens);
  auto id = [&](std::string_view t, size_t rank) {
    const int32_t found = id_of.find(t);
    if (found < 0)
      fail(path, "model.merges[" + std::to_string(rank) + "] names \"" + std::string(t) +
                     "\", which is not in the vocab");
    return found;
  };
  spec.merges.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.emplace_back(id(m[0].get_ref<const std::string&>(), rank),
                               id(m[1].get_ref<const std::string&>(), rank));
    } else if (m.is_string()) {  // older format: "left right"
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        fail(path, "model.merges[" + std::to_string(rank) + "] is not \"left right\"");
      spec.merges.emplace_back(id(std::string_view(s).substr(0, space), rank),
                               id(std::string_view(s).substr(space + 1), rank));
    } else {
      fail(path, "model.merges[" + std::to_string(rank) + "] is not a pair of strings");
    }
  }
}

void read_added_tokens(const std::string& path, const json& root, TokenizerSpec& spec) {
  const auto found = root.find("added_tokens");
  if (found == root.end()) return;
  const json& added = *found;
  for (size_t i = 0; i < added.size(); ++i) {
    const json& a = added[i];
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string())
      fail(path, where + " needs an integer id and a string content");
    for (const char* flag : {"lstrip", "rstrip", "single_word", "normalized"}) {
      if (a.value(flag, false)) fail(path, where + ": " + flag + "=true is not supported");
    }
    const int64_t id = a["id"].get<int64_t>();
    if (id < 0 || id > (int64_t{1} << 24)) fail(path, where + ": id out of range");
    const auto uid = static_cast<size_t>(id);
    if (uid >= spec.tokens.size()) spec.tokens.resize(uid + 1);
    spec.tokens[uid] = a["content"].get<std::string>();
    spec.added.resize(spec.tokens.size(), 0);
    spec.special.resize(spec.tokens.size(), 0);
    spec.added[uid] = 1;
    spec.special[uid] = a.value("special", false) ? 1 : 0;
  }
}

int32_t id_of_text(const TokenizerSpec& spec, const std::string& text) {
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    if (spec.tokens[i] == text) return static_cast<int32_t>(i);
  }
  return -1;
}

// <bos> from tokenizer_config.json, else the first special token of the post-processor's template.
void read_specials(const json& root, const json& config, TokenizerSpec& spec) {
  std::optional<std::string> bos = token_field(config, "bos_token");
  bool template_bos = false;
  const json post = root.value("post_processor", json());
  if (post.is_object() && post.value("type", "") == "TemplateProcessing" &&
      post.contains("single") && post["single"].is_array() && !post["single"].empty()) {
    const json& first = post["single"][0];
    if (first.contains("SpecialToken") && first["SpecialToken"].contains("id")) {
      template_bos = true;
      if (!bos) bos = first["SpecialToken"]["id"].get<std::string>();
    }
  }
  if (bos) spec.bos_id = id_of_text(spec, *bos);
  spec.add_bos = config.contains("add_bos_token") && config["add_bos_token"].is_boolean()
                     ? config["add_bos_token"].get<bool>()
                     : template_bos;
  if (auto eos = token_field(config, "eos_token")) spec.eos_id = id_of_text(spec, *eos);
  if (auto pad = token_field(config, "pad_token")) spec.pad_id = id_of_text(spec, *pad);
  const json& model = root["model"];
  if (model.contains("unk_token") && model["unk_token"].is_string())
    spec.unk_id = id_of_text(spec, model["unk_token"].get<std::string>());
  // Generation ends at the declared eos and at Gemma's own end markers when the vocab has them.
  for (int32_t id : {spec.eos_id, id_of_text(spec, "<eos>"), id_of_text(spec, "<end_of_turn>")}) {
    if (id >= 0 && std::find(spec.stop_ids.begin(), spec.stop_ids.end(), id) == spec.stop_ids.end())
      spec.stop_ids.push_back(id);
  }
}

std::string read_chat_template(const std::string& path, const json& config) {
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {  // [{"name": ..., "template": ...}]: the one named "default"
    for (const json& t : *it) {
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
          t["template"].is_string())
        return t["template"].get<std::string>();
    }
  }
  fail(path, "chat_template is neither a string nor a list holding a \"default\" template");
}

}  // namespace

TokenizerSpec spec_from_hf_files(const std::string& tokenizer_json_path,
                                 const std::string& config_path) {
  const std::string& path = tokenizer_json_path;
  const json root = read_json(path);
  if (!root.is_object() || !root.contains("model")) fail(path, "no \"model\" object");
  check_normalizer(path, root);
  check_pre_tokenizer(path, root);
  check_model(path, root["model"]);

  TokenizerSpec spec;
  spec.source = path;
  read_vocab(path, root["model"]["vocab"], spec);
  read_merges(path, root["model"]["merges"], spec);
  read_added_tokens(path, root, spec);
  spec.added.resize(spec.tokens.size(), 0);
  spec.special.resize(spec.tokens.size(), 0);

  json config = json::object();
  if (!config_path.empty() && std::filesystem::exists(config_path)) {
    config = read_json(config_path);
    if (!config.is_object()) fail(config_path, "not a JSON object");
  }
  read_specials(root, config, spec);
  spec.chat_template = read_chat_template(config_path, config);
  return spec;
}

}  // namespace gemmax
