// GGUF reader. Layout (all little-endian): "GGUF", u32 version, u64 tensor_count, u64 kv_count, the
// key/value pairs, the tensor infos, padding to `general.alignment`, then tensor data. Everything
// is read through a bounds-checked cursor, and every count is checked against the bytes left before
// any memory is reserved for it, so a corrupt or hostile file fails fast with a GgufError instead
// of allocating or crashing.
#include "io/gguf_reader.h"

#include <array>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

namespace gemmax {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;   // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;  // real files never nest; the bound keeps recursion shallow
constexpr uint64_t kMaxAlignment = 1u << 30;
// Each decoded array element costs ~48 bytes of GgufValue, so a file could ask for 48x its size in
// memory. Cap the elements of all arrays together: 16M is ~20x a large tokenizer (3 arrays x
// 262144).
constexpr uint64_t kMaxArrayElements = uint64_t{1} << 24;

enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

std::string type_name(uint32_t type) {
  static constexpr std::array<const char*, 13> kNames = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                         "i32", "f32", "bool", "string", "array",
                                                         "u64", "i64", "f64"};
  return type < kNames.size() ? kNames[type] : "type " + std::to_string(type);
}

// Smallest number of bytes one value of `type` occupies; used to cap array counts by the bytes
// left. 0 means the type id is unknown.
uint64_t min_value_bytes(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
    case kString:
      return 8;  // u64 length, possibly empty
    case kArray:
      return 4 + 8;  // element type + count, possibly empty
    default:
      return 0;
  }
}

std::string in_quotes(std::string_view s) {
  std::string out(
      1, '\'');  // built by appends: `"'" + s + "'"` trips a GCC 12 -Wrestrict false positive
  out.append(s).push_back('\'');
  return out;
}

// Bounds-checked little-endian reader over the file bytes. Every failure names the file, what was
// being read and the byte offset.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, const std::string& path, uint64_t max_array_elements)
      : bytes_(bytes), path_(path), max_array_elements_(max_array_elements) {}

  // Arrays longer than this are skipped (GgufReadOptions::max_array_elements).
  uint64_t max_array_elements() const { return max_array_elements_; }

  size_t pos() const { return pos_; }
  const std::string& path() const { return path_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  [[noreturn]] void fail(const std::string& what, const std::string& msg) const {
    throw GgufError(path_ + ": " + what + ": " + msg + " (at byte " + std::to_string(pos_) + ")");
  }

  // `what` names the field for the error message; it is only read on failure, so hot loops pass a
  // prebuilt string and allocate nothing per value.
  template <typename T>
  T read(const std::string& what) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (remaining() < sizeof(T)) fail(what, "file is truncated");
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));  // the host is little-endian like GGUF
    pos_ += sizeof(T);
    return value;
  }

  // A u64 length followed by that many bytes, assigned into `out` (no temporary string).
  // A string's u64 length, checked against the bytes left.
  uint64_t read_string_length(const std::string& what) {
    if (remaining() < sizeof(uint64_t)) fail(what, "file is truncated inside a string length");
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining()) {
      fail(what, "string length " + std::to_string(len) + " exceeds the " +
                     std::to_string(remaining()) + " bytes left");
    }
    return len;
  }

  void read_string_into(const std::string& what, std::string& out) {
    const uint64_t len = read_string_length(what);
    out.assign(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
  }

  // Counts array elements against kMaxArrayElements before they are allocated.
  void charge_elements(uint64_t n, const std::string& what) {
    if (n > kMaxArrayElements - elements_) {
      fail(what, "metadata arrays hold more than " + std::to_string(kMaxArrayElements) +
                     " elements in total");
    }
    elements_ += n;
  }

  // Steps over n bytes (a skipped value), failing if fewer are left.
  void skip(uint64_t n, const std::string& what) {
    if (n > remaining()) fail(what, "file is truncated");
    pos_ += n;
  }

  // The bytes [from, to) of the image (a skipped array's elements).
  std::span<const std::byte> slice(size_t from, size_t to) const {
    return bytes_.subspan(from, to - from);
  }

  std::string_view read_string_view(const std::string& what) {
    const uint64_t len = read_string_length(what);
    const std::string_view view(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return view;
  }

  std::string read_string(const std::string& what) {
    std::string s;
    read_string_into(what, s);
    return s;
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& path_;
  uint64_t max_array_elements_;
  size_t pos_ = 0;
  uint64_t elements_ = 0;
};

void read_value(Cursor& in, uint32_t type, GgufValue& v, const std::string& what, int depth);

// An array's element type and count, checked: the type is known, the nesting shallow, and the
// count fits in the bytes left (each element needs at least min_value_bytes), so nothing is
// allocated or looped over on a lie.
std::pair<uint32_t, uint64_t> read_array_header(Cursor& in, const std::string& what, int depth) {
  if (depth >= kMaxArrayDepth) {
    in.fail(what, "arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " levels");
  }
  const uint32_t elem_type = in.read<uint32_t>(what);
  const uint64_t elem_min = min_value_bytes(elem_type);
  if (elem_min == 0) in.fail(what, "unknown array element type " + std::to_string(elem_type));
  const uint64_t count = in.read<uint64_t>(what);
  if (count > in.remaining() / elem_min) {
    in.fail(what, "array of " + std::to_string(count) + " " + type_name(elem_type) +
                      " elements cannot fit in the " + std::to_string(in.remaining()) +
                      " bytes left");
  }
  return {elem_type, count};
}

bool read_bool(Cursor& in, const std::string& what) {
  const uint8_t b = in.read<uint8_t>(what);
  if (b > 1) in.fail(what, "bool value " + std::to_string(b) + " is neither 0 nor 1");
  return b == 1;
}

// Steps over one value of `type` with the same checks as read_value, decoding nothing.
void skip_value(Cursor& in, uint32_t type, const std::string& what, int depth) {
  switch (type) {
    case kBool:
      read_bool(in, what);
      return;
    case kString:
      in.skip(in.read_string_length(what), what);
      return;
    case kArray: {
      const auto [elem_type, count] = read_array_header(in, what, depth);
      for (uint64_t i = 0; i < count; ++i) skip_value(in, elem_type, what, depth + 1);
      return;
    }
    default: {
      const uint64_t bytes = min_value_bytes(type);  // the fixed-size types
      if (bytes == 0) in.fail(what, "unknown value type " + std::to_string(type));
      in.skip(bytes, what);
    }
  }
}

void read_array(Cursor& in, GgufValue& v, const std::string& what, int depth) {
  const auto [elem_type, count] = read_array_header(in, what, depth);
  v.array_type = elem_type;
  if (count > in.max_array_elements()) {
    const size_t start = in.pos();
    for (uint64_t i = 0; i < count; ++i) skip_value(in, elem_type, what, depth + 1);
    v.value = GgufUnloadedArray{count, in.slice(start, in.pos())};
    return;
  }
  in.charge_elements(count, what);
  auto array = std::make_shared<GgufArray>(count);
  // Elements are filled in place: tokenizer arrays hold 262144 entries and this is the hot loop.
  for (GgufValue& elem : *array) read_value(in, elem_type, elem, what, depth + 1);
  v.value = std::move(array);
}

void read_value(Cursor& in, uint32_t type, GgufValue& v, const std::string& what, int depth) {
  v.type = type;
  switch (type) {
    case kU8:
      v.value = uint64_t{in.read<uint8_t>(what)};
      break;
    case kI8:
      v.value = int64_t{in.read<int8_t>(what)};
      break;
    case kU16:
      v.value = uint64_t{in.read<uint16_t>(what)};
      break;
    case kI16:
      v.value = int64_t{in.read<int16_t>(what)};
      break;
    case kU32:
      v.value = uint64_t{in.read<uint32_t>(what)};
      break;
    case kI32:
      v.value = int64_t{in.read<int32_t>(what)};
      break;
    case kU64:
      v.value = in.read<uint64_t>(what);
      break;
    case kI64:
      v.value = in.read<int64_t>(what);
      break;
    case kF32:
      v.value = double{in.read<float>(what)};
      break;
    case kF64:
      v.value = in.read<double>(what);
      break;
    case kBool:
      v.value = read_bool(in, what);
      break;
    case kString:
      in.read_string_into(what, v.value.emplace<std::string>());
      break;
    case kArray:
      read_array(in, v, what, depth);
      break;
    default:
      in.fail(what, "unknown value type " + std::to_string(type));
  }
}

// a * b and a + b for the size arithmetic, failing instead of wrapping.
bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
bool checked_add(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

}  // namespace

// ---- GgufValue
// ----------------------------------------------------------------------------------------

namespace {
[[noreturn]] void wrong_type(const std::string& key, const char* expected, uint32_t type) {
  throw GgufError("metadata key " + in_quotes(key) + ": expected " + expected + ", got " +
                  type_name(type));
}
}  // namespace

int64_t GgufValue::as_int(const std::string& key) const {
  if (const auto* u = std::get_if<uint64_t>(&value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw GgufError("metadata key " + in_quotes(key) + ": value " + std::to_string(*u) +
                      " does not fit in int64");
    }
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  wrong_type(key, "an integer", type);
}

double GgufValue::as_float(const std::string& key) const {
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&value)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
  wrong_type(key, "a number", type);
}

bool GgufValue::as_bool(const std::string& key) const {
  if (const auto* b = std::get_if<bool>(&value)) return *b;
  wrong_type(key, "a bool", type);
}

const std::string& GgufValue::as_string(const std::string& key) const {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  wrong_type(key, "a string", type);
}

const GgufArray& GgufValue::as_array(const std::string& key) const {
  if (const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&value)) return **a;
  if (const auto* u = std::get_if<GgufUnloadedArray>(&value)) {
    throw GgufError("metadata key " + in_quotes(key) + ": array of " + std::to_string(u->count) +
                    " elements was not decoded (GgufReadOptions::max_array_elements)");
  }
  wrong_type(key, "an array", type);
}

namespace {

bool is_number_type(uint32_t type) {
  return type != kBool && type != kString && type != kArray && min_value_bytes(type) > 0;
}

// One number of GGUF type `type` (is_number_type) as a double.
double read_number(Cursor& in, uint32_t type, const std::string& what) {
  GgufValue v;
  read_value(in, type, v, what, 0);
  return v.as_float(what);
}

}  // namespace

std::vector<std::string_view> GgufValue::strings(const std::string& key) const {
  if (type != kArray || array_type != kString) wrong_type(key, "an array of strings", type);
  std::vector<std::string_view> out;
  if (const auto* u = std::get_if<GgufUnloadedArray>(&value)) {
    // The reader already stepped over these bytes with every check; the cursor checks again.
    Cursor in(u->bytes, key, 0);
    out.reserve(u->count);
    for (uint64_t i = 0; i < u->count; ++i) out.push_back(in.read_string_view(key));
    return out;
  }
  const GgufArray& list = as_array(key);
  out.reserve(list.size());
  for (const GgufValue& e : list) out.emplace_back(e.as_string(key));
  return out;
}

std::vector<double> GgufValue::numbers(const std::string& key) const {
  if (type != kArray || !is_number_type(array_type)) wrong_type(key, "an array of numbers", type);
  std::vector<double> out;
  if (const auto* u = std::get_if<GgufUnloadedArray>(&value)) {
    Cursor in(u->bytes, key, 0);
    out.reserve(u->count);
    for (uint64_t i = 0; i < u->count; ++i) out.push_back(read_number(in, array_type, key));
    return out;
  }
  const GgufArray& list = as_array(key);
  out.reserve(list.size());
  for (const GgufValue& e : list) out.push_back(e.as_float(key));
  return out;
}

// ---- GgufReader
// ---------------------------------------------------------------------------------------

GgufReader::GgufReader(const std::string& path, GgufReadOptions options) : path_(path) {
  try {
    file_ = std::make_unique<MappedFile>(path);
  } catch (const std::runtime_error& e) {
    throw GgufError(e.what());
  }
  parse(file_->bytes(), options);
}

GgufReader::GgufReader(std::span<const std::byte> bytes, const std::string& name,
                       GgufReadOptions options)
    : path_(name) {
  parse(bytes, options);
}

namespace {

struct RawTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // innermost-first, as stored
  uint32_t type = 0;
  uint64_t offset = 0;  // relative to the data section
};

RawTensorInfo read_tensor_info(Cursor& in, uint64_t index) {
  RawTensorInfo t;
  const std::string where = "tensor #" + std::to_string(index);
  t.name = in.read_string(where + " name");
  if (t.name.empty()) in.fail(where, "empty tensor name");
  const std::string what = "tensor " + in_quotes(t.name);
  const uint32_t n_dims = in.read<uint32_t>(what + " n_dims");
  if (n_dims == 0 || n_dims > kMaxDims) {
    in.fail(what,
            "n_dims " + std::to_string(n_dims) + " is outside 1.." + std::to_string(kMaxDims));
  }
  for (uint32_t d = 0; d < n_dims; ++d) t.ne.push_back(in.read<uint64_t>(what + " dimension"));
  t.type = in.read<uint32_t>(what + " type");
  t.offset = in.read<uint64_t>(what + " offset");
  return t;
}

// Validates one tensor info against the layout and file size and builds its view (outermost-first).
TensorView make_view(const Cursor& in, std::span<const std::byte> bytes, uint64_t data_offset,
                     uint64_t alignment, RawTensorInfo info) {
  const std::string what = "tensor " + in_quotes(info.name);
  // Checked after all infos are read, so the cursor position would mislead: no byte offset here.
  const auto fail = [&](const std::string& field, const std::string& msg) {
    throw GgufError(in.path() + ": " + field + ": " + msg);
  };
  const auto layout = dtype_layout(static_cast<DType>(info.type));
  if (!layout || dtype_is_repacked(static_cast<DType>(info.type)))
    fail(what, "unsupported tensor type id " + std::to_string(info.type));
  uint64_t numel = 1;
  for (uint64_t d : info.ne) {
    if (d == 0 || d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail(what, "dimension " + std::to_string(d) + " is not in 1..2^63-1");
    }
    if (!checked_mul(numel, d, &numel) ||
        numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail(what, "element count overflows");
    }
  }
  const uint64_t cols = info.ne[0];
  const uint64_t rows = numel / cols;
  if (cols % layout->block_size != 0) {
    fail(what, std::string(layout->name) + " needs rows of a multiple of " +
                   std::to_string(layout->block_size) + " elements, got " + std::to_string(cols));
  }
  uint64_t nbytes = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
  if (!checked_mul(cols / layout->block_size, layout->block_bytes, &nbytes) ||
      !checked_mul(nbytes, rows, &nbytes)) {
    fail(what, "byte size overflows");
  }
  if (info.offset % alignment != 0) {
    fail(what, "data offset " + std::to_string(info.offset) + " is not a multiple of the " +
                   std::to_string(alignment) + "-byte alignment");
  }
  if (!checked_add(data_offset, info.offset, &begin) || !checked_add(begin, nbytes, &end) ||
      end > bytes.size()) {
    fail(what, "data [" + std::to_string(info.offset) + ", +" + std::to_string(nbytes) +
                   ") lies outside the file (data section starts at " +
                   std::to_string(data_offset) + ", file has " + std::to_string(bytes.size()) +
                   " bytes)");
  }
  TensorView view;
  view.name = std::move(info.name);
  view.dtype = static_cast<DType>(info.type);
  view.shape.assign(info.ne.rbegin(), info.ne.rend());
  view.data = bytes.data() + begin;
  view.nbytes = nbytes;
  return view;
}

}  // namespace

void GgufReader::parse(std::span<const std::byte> bytes, const GgufReadOptions& options) {
  Cursor in(bytes, path_, options.max_array_elements);
  if (in.read<uint32_t>("magic") != kMagic) in.fail("magic", "not a GGUF file");
  version_ = in.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    in.fail("version", "unsupported GGUF version " + std::to_string(version_) +
                           " (only 2 and 3 are read; a huge number means a big-endian file)");
  }
  const uint64_t n_tensors = in.read<uint64_t>("tensor count");
  const uint64_t n_kv = in.read<uint64_t>("metadata count");
  // A key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
  // 8 + 4 + 8 + 4 + 8. Reject counts that cannot fit before looping over them.
  if (n_kv > in.remaining() / 13) {
    in.fail("metadata count", std::to_string(n_kv) + " pairs cannot fit in the file");
  }
  if (n_tensors > in.remaining() / 32) {
    in.fail("tensor count", std::to_string(n_tensors) + " tensors cannot fit in the file");
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = in.read_string("metadata key #" + std::to_string(i));
    const std::string what = "metadata key " + in_quotes(key);
    const uint32_t type = in.read<uint32_t>(what + " type");
    GgufValue value;
    read_value(in, type, value, what, 0);
    if (!metadata_.emplace(std::move(key), std::move(value)).second) in.fail(what, "duplicate key");
  }

  if (const GgufValue* a = find("general.alignment")) {
    // Any integer type is accepted (the spec says u32); non-integers and negatives leave align at
    // 0.
    uint64_t align = 0;
    if (const auto* u = std::get_if<uint64_t>(&a->value)) align = *u;
    if (const auto* i = std::get_if<int64_t>(&a->value); i && *i > 0)
      align = static_cast<uint64_t>(*i);
    if (align == 0 || align > kMaxAlignment || (align & (align - 1)) != 0) {
      in.fail("metadata key 'general.alignment'", "must be a power-of-two integer up to 2^30");
    }
    alignment_ = align;
  } else {
    alignment_ = kDefaultAlignment;
  }

  std::vector<RawTensorInfo> infos;
  infos.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) infos.push_back(read_tensor_info(in, i));

  // pos <= file size and alignment <= 2^30, so this cannot overflow.
  data_offset_ = (in.pos() + alignment_ - 1) / alignment_ * alignment_;
  tensors_.reserve(infos.size());
  for (RawTensorInfo& info : infos) {
    TensorView view = make_view(in, bytes, data_offset_, alignment_, std::move(info));
    if (!tensor_index_.emplace(view.name, tensors_.size()).second) {
      in.fail("tensor " + in_quotes(view.name), "duplicate tensor name");
    }
    tensors_.push_back(std::move(view));
  }
}

const GgufValue* GgufReader::find(const std::string& key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {

// Looks `key` up and runs a typed accessor on it, naming the file in any error.
template <typename F>
auto typed(const GgufReader& r, const std::string& key, F&& get) {
  const GgufValue* v = r.find(key);
  if (v == nullptr) throw GgufError(r.path() + ": missing metadata key " + in_quotes(key));
  try {
    return get(*v);
  } catch (const GgufError& e) {
    throw GgufError(r.path() + ": " + e.what());
  }
}

}  // namespace

int64_t GgufReader::get_int(const std::string& key) const {
  return typed(*this, key, [&](const GgufValue& v) { return v.as_int(key); });
}

double GgufReader::get_float(const std::string& key) const {
  return typed(*this, key, [&](const GgufValue& v) { return v.as_float(key); });
}

std::string GgufReader::get_string(const std::string& key) const {
  return typed(*this, key, [&](const GgufValue& v) { return v.as_string(key); });
}

std::optional<int64_t> GgufReader::find_int(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_int(key);
}

std::optional<double> GgufReader::find_float(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_float(key);
}

std::optional<std::string> GgufReader::find_string(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}

std::optional<bool> GgufReader::find_bool(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return typed(*this, key, [&](const GgufValue& v) { return v.as_bool(key); });
}

const TensorView* GgufReader::find_tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& GgufReader::tensor(const std::string& name) const {
  const TensorView* t = find_tensor(name);
  if (t == nullptr) throw GgufError(path_ + ": no tensor named " + in_quotes(name));
  return *t;
}

}  // namespace gemmax
