//! The `workspacesweb-exporter` binary: parses flags and hands over to [`workspacesweb_exporter::daemon`].

use std::process::ExitCode;

use workspacesweb_exporter::cli::{self, Parsed};
use workspacesweb_exporter::{daemon, telemetry};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Parsed::Run(cli) => *cli,
        Parsed::Print(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Fail(text) => {
            eprint!("{text}");
            return ExitCode::from(daemon::EXIT_CONFIG);
        }
    };
    if cli.config_check {
        return daemon::check(&cli);
    }
    telemetry::init(cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(daemon::run(cli));
    // Blocking work still running (a state write on a hung disk) must not hold the exit.
    runtime.shutdown_timeout(daemon::BLOCKING_SHUTDOWN_GRACE);
    code
}
