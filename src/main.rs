//! The `meshcall` binary: parses the command line, starts logging, calls the library.

fn main() {}
