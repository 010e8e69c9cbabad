fn main() -> std::process::ExitCode {
    sessionsync::cli::main()
}
