use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use roamgw_gateway::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return roamgw_common::cli::exit_on_clap_error(e, "roamgw"),
    };
    roamgw_common::cli::init_logging(cli.verbosity.verbose);
    match roamgw_gateway::dispatch(cli) {
        Ok(outcome) => {
            // A closed pipe (`roamgw list | head`) is not an error worth a message.
            let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
            ExitCode::from(outcome.exit_code)
        }
        Err(e) => {
            eprintln!("roamgw: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
