// UTF-8 helpers shared by the tokenizer, the detokenizer and the chat template: strict decoding (so
// invalid input is detected, never misread), encoding, and Python's notion of whitespace for
// str.strip().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gemmax::utf8 {

// Length of the well-formed UTF-8 sequence starting at s[pos] (1..4), storing its code point in
// `cp`; 0 when the bytes there are not well-formed (stray continuation byte, overlong form,
// surrogate, value above U+10FFFF or a sequence cut short).
size_t decode(std::string_view s, size_t pos, uint32_t& cp);

bool is_valid(std::string_view s);

void append(std::string& out, uint32_t cp);

// True for exactly the code points Python's str.isspace() accepts (what str.strip() removes).
bool is_python_space(uint32_t cp);

// Python's str.strip() with no arguments on well-formed UTF-8.
std::string_view python_strip(std::string_view s);

}  // namespace gemmax::utf8
