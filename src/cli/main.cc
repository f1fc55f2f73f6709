#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"gemmax: runs Google's Gemma 3 text models"};
  app.require_subcommand(1);
  gemmax::cli::register_info_command(app);
  gemmax::cli::register_logits_command(app);
  gemmax::cli::register_generate_command(app);
  gemmax::cli::register_serve_command(app);
  gemmax::cli::register_chat_command(app);
  gemmax::cli::register_bench_command(app);
  gemmax::cli::register_tokenizer_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "gemmax: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
