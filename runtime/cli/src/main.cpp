#include "app.hpp"

int main(int argc, char** argv) { return pyoco::cli::run(argc, argv); }
