//! `shoal-agent`: Shoal's device agent. See `shoal_agent::cli`.

fn main() -> std::process::ExitCode {
    shoal_agent::cli::main_entry()
}
