// kvscope-cli: see app/cli_app.cpp.
#include "app/cli_commands.h"

int main(int argc, char** argv) { return cli::main(argc, argv); }
