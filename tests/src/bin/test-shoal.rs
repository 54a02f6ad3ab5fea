//! The `shoal` CLI as a process of its own (`env!("CARGO_BIN_EXE_test-shoal")`), for
//! scenarios that drive it as users do: flags, environment, stdin, exit codes.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shoal_cli::main_entry().await
}
