fn main() -> std::process::ExitCode {
    genesys_kafka_bridge::cli::main()
}
