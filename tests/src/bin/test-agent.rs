//! The `shoal-agent` command line as a binary of this crate, so scenarios can run a real agent
//! process (`env!("CARGO_BIN_EXE_test-agent")`) and kill it with SIGKILL.

fn main() -> std::process::ExitCode {
    shoal_agent::cli::main_entry()
}
