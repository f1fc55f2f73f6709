// safetensors reader. A file is: u64 little-endian header length N, N bytes of JSON mapping tensor
// names to {dtype, shape, data_offsets} (plus an optional "__metadata__" string map), then the data
// section the offsets are relative to. Every field is validated before a view is built, so views
// never point outside the mapped file.
#include "io/safetensors_reader.h"

#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>

namespace gemmax {
namespace {

using nlohmann::json;

// Same bound as the reference implementation: a header is a table of contents, never this big.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr uint64_t kMaxIndexBytes = 100'000'000;
constexpr char kIndexName[] = "model.safetensors.index.json";
constexpr char kSingleName[] = "model.safetensors";

struct DTypeInfo {
  std::string_view name;
  uint64_t bytes;
  std::optional<DType> dtype;  // nullopt: valid safetensors dtype that gemmax does not compute with
};

constexpr DTypeInfo kDTypes[] = {
    {"F32", 4, DType::kF32},   {"F16", 2, DType::kF16},      {"BF16", 2, DType::kBF16},
    {"F64", 8, std::nullopt},  {"I64", 8, std::nullopt},     {"U64", 8, std::nullopt},
    {"I32", 4, std::nullopt},  {"U32", 4, std::nullopt},     {"I16", 2, std::nullopt},
    {"U16", 2, std::nullopt},  {"I8", 1, std::nullopt},      {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt}, {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
};

const DTypeInfo* find_dtype(std::string_view name) {
  for (const DTypeInfo& d : kDTypes) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

std::string in_quotes(std::string_view s) {
  std::string out(
      1, '\'');  // built by appends: `"'" + s + "'"` trips a GCC 12 -Wrestrict false positive
  out.append(s).push_back('\'');
  return out;
}

[[noreturn]] void fail(const std::string& file, const std::string& what, const std::string& msg) {
  throw SafetensorsError(file + ": " + what + ": " + msg);
}

// Parses JSON text; a duplicated top-level key is an error (a second entry for a tensor name would
// otherwise silently win).
json parse_json(std::string_view text, const std::string& file, const std::string& what) {
  std::string duplicate;
  std::set<std::string> seen;
  const json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && duplicate.empty() &&
        parsed.is_string() && !seen.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {
    fail(file, what, std::string("not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail(file, what, "duplicate key " + in_quotes(duplicate));
  if (!j.is_object()) fail(file, what, "must be a JSON object");
  return j;
}

// A JSON integer in 0..2^63-1.
uint64_t read_count(const json& v, const std::string& file, const std::string& what) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return u;
  } else if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(v.get<int64_t>());
  }
  fail(file, what, "expected a non-negative integer, got " + v.dump());
}

const json& member(const json& obj, const char* key, const std::string& file,
                   const std::string& what) {
  const auto it = obj.find(key);
  if (it == obj.end()) fail(file, what, std::string("missing \"") + key + "\"");
  return *it;
}

struct Entry {
  const DTypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin;
  uint64_t nbytes;
};

// Validates one tensor entry of a header against the data section size.
Entry parse_entry(const json& v, uint64_t data_size, const std::string& file,
                  const std::string& what) {
  if (!v.is_object()) fail(file, what, "entry must be a JSON object");
  const json& dtype = member(v, "dtype", file, what);
  if (!dtype.is_string()) fail(file, what, "\"dtype\" must be a string");
  Entry e{find_dtype(dtype.get<std::string>()), {}, 0, 0};
  if (e.dtype == nullptr) fail(file, what, "unknown dtype " + dtype.dump());

  const json& shape = member(v, "shape", file, what);
  if (!shape.is_array()) fail(file, what, "\"shape\" must be an array");
  uint64_t numel = 1;
  for (const json& d : shape) {
    const uint64_t dim = read_count(d, file, what + " shape");
    if (__builtin_mul_overflow(numel, dim, &numel) ||
        numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail(file, what, "element count of shape " + shape.dump() + " overflows");
    }
    e.shape.push_back(static_cast<int64_t>(dim));
  }
  if (__builtin_mul_overflow(numel, e.dtype->bytes, &e.nbytes)) {
    fail(file, what, "byte size overflows");
  }

  const json& offsets = member(v, "data_offsets", file, what);
  if (!offsets.is_array() || offsets.size() != 2) {
    fail(file, what, "\"data_offsets\" must be [begin, end]");
  }
  e.begin = read_count(offsets[0], file, what + " data_offsets");
  const uint64_t end = read_count(offsets[1], file, what + " data_offsets");
  if (e.begin > end || end > data_size) {
    fail(file, what,
         "data_offsets " + offsets.dump() + " are not an ordered range inside the " +
             std::to_string(data_size) + "-byte data section");
  }
  if (end - e.begin != e.nbytes) {
    fail(file, what,
         "data_offsets " + offsets.dump() + " span " + std::to_string(end - e.begin) +
             " bytes but " + std::string(e.dtype->name) + " " + shape.dump() + " needs " +
             std::to_string(e.nbytes));
  }
  return e;
}

std::map<std::string, std::string> parse_metadata(const json& v, const std::string& file) {
  if (!v.is_object()) fail(file, "__metadata__", "must be a JSON object");
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : v.items()) {
    if (!value.is_string()) fail(file, "__metadata__ " + in_quotes(key), "value must be a string");
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

// A weight_map shard name must be a plain file name beside the index: no directories, no escaping.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos;
}

std::string resolve_directory(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  // error_code overloads, so a permission problem becomes our error rather than filesystem_error.
  std::error_code ec;
  if (fs::exists(dir / kIndexName, ec)) return (dir / kIndexName).string();
  if (fs::exists(dir / kSingleName, ec)) return (dir / kSingleName).string();
  // Otherwise accept a directory holding exactly one .safetensors file.
  std::vector<fs::path> found;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".safetensors") found.push_back(it->path());
  }
  if (ec) throw SafetensorsError(dir.string() + ": cannot list directory: " + ec.message());
  if (found.size() == 1) return found.front().string();
  throw SafetensorsError(dir.string() + ": holds no " + kIndexName + " or " + kSingleName +
                         " and " + std::to_string(found.size()) +
                         " other .safetensors files (need exactly one)");
}

}  // namespace

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) file = resolve_directory(path);
  if (file.ends_with(".json")) {
    load_index(file);
  } else {
    add_file(file);
  }
}

SafetensorsReader::SafetensorsReader(std::span<const std::byte> bytes, const std::string& name)
    : path_(name) {
  add_image(bytes, name);
}

std::vector<std::string> SafetensorsReader::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

void SafetensorsReader::add_file(const std::string& file) {
  try {
    files_.push_back(std::make_unique<MappedFile>(file));
  } catch (const std::runtime_error& e) {
    throw SafetensorsError(e.what());
  }
  add_image(files_.back()->bytes(), file);
}

void SafetensorsReader::add_image(std::span<const std::byte> bytes, const std::string& name) {
  uint64_t header_len = 0;
  if (bytes.size() < sizeof(header_len))
    fail(name, "header length", "file is shorter than 8 bytes");
  std::memcpy(&header_len, bytes.data(),
              sizeof(header_len));  // little-endian host, like the format
  if (header_len > kMaxHeaderBytes || header_len > bytes.size() - sizeof(header_len)) {
    fail(name, "header length",
         std::to_string(header_len) + " exceeds the file or the " +
             std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + sizeof(header_len),
                              header_len);
  const json header = parse_json(text, name, "header");
  const std::span<const std::byte> data = bytes.subspan(sizeof(header_len) + header_len);
  const bool first_file = files_.size() <= 1;  // 0 for an in-memory image, 1 for the first file

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      auto meta = parse_metadata(value, name);
      if (first_file) metadata_ = std::move(meta);
      continue;
    }
    const std::string what = "tensor " + in_quotes(key);
    const Entry e = parse_entry(value, data.size(), name, what);
    if (!origin_.emplace(key, name).second) {
      fail(name, what, "also defined in " + origin_.at(key));
    }
    if (!e.dtype->dtype) {
      unsupported_.emplace(key, std::string(e.dtype->name));
      continue;
    }
    TensorView view;
    view.name = key;
    view.dtype = *e.dtype->dtype;
    view.shape = e.shape;
    view.data = data.data() + e.begin;
    view.nbytes = e.nbytes;
    tensors_.emplace(key, std::move(view));
  }
}

void SafetensorsReader::load_index(const std::string& index_path) {
  namespace fs = std::filesystem;
  std::unique_ptr<MappedFile> index;
  try {
    index = std::make_unique<MappedFile>(index_path);
  } catch (const std::runtime_error& e) {
    throw SafetensorsError(e.what());
  }
  if (index->size() > kMaxIndexBytes) fail(index_path, "index", "larger than 100 MB");
  const json j =
      parse_json(std::string_view(reinterpret_cast<const char*>(index->data()), index->size()),
                 index_path, "index");
  const json& weight_map = member(j, "weight_map", index_path, "index");
  if (!weight_map.is_object()) fail(index_path, "weight_map", "must be a JSON object");

  // Shards in name order, each mapped once however many tensors it holds.
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : weight_map.items()) {
    if (!shard.is_string() || !is_plain_file_name(shard.get<std::string>())) {
      fail(index_path, "weight_map " + in_quotes(tensor),
           "shard must be a plain file name beside the index, got " + shard.dump());
    }
    shards.insert(shard.get<std::string>());
  }
  const fs::path dir = fs::path(index_path).parent_path();
  for (const std::string& shard : shards) add_file((dir / shard).string());

  for (const auto& [tensor, shard] : weight_map.items()) {
    const std::string expected = (dir / shard.get<std::string>()).string();
    const auto it = origin_.find(tensor);
    if (it == origin_.end() || it->second != expected) {
      fail(index_path, "weight_map " + in_quotes(tensor),
           "shard " + shard.dump() + " does not hold this tensor");
    }
  }
}

const TensorView* SafetensorsReader::find_tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorView& SafetensorsReader::tensor(const std::string& name) const {
  if (const TensorView* t = find_tensor(name)) return *t;
  if (const auto it = unsupported_.find(name); it != unsupported_.end()) {
    throw SafetensorsError(path_ + ": tensor " + in_quotes(name) + " has dtype " + it->second +
                           ", which gemmax does not support (F32, F16 and BF16 only)");
  }
  throw SafetensorsError(path_ + ": no tensor named " + in_quotes(name));
}

}  // namespace gemmax
