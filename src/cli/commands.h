// Each `gemmax` subcommand registers itself on the CLI11 app; main() only wires them together.
#pragma once

namespace CLI {
class App;
}

namespace gemmax::cli {

void register_info_command(CLI::App& app);
void register_logits_command(CLI::App& app);
void register_generate_command(CLI::App& app);
void register_serve_command(CLI::App& app);
void register_chat_command(CLI::App& app);
void register_bench_command(CLI::App& app);
// tokenize, detokenize, chat-template
void register_tokenizer_commands(CLI::App& app);

}  // namespace gemmax::cli
