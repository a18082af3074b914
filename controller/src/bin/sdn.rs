//! `sdn`: bring labs up and down, inspect switches, capture, benchmark.

fn main() -> std::process::ExitCode {
    sdn_controller::cli::main()
}
