use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use roamgw_roamer::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return roamgw_common::cli::exit_on_clap_error(e, "roamer"),
    };
    roamgw_common::cli::init_logging(cli.verbosity.verbose);
    let result = match cli.command {
        Command::Run(args) => roamgw_roamer::run::run(&args)
            .map(|()| String::new())
            .map_err(|e| e.to_string()),
        Command::Check(args) => {
            let routes = roamgw_common::routes::Routes::system();
            roamgw_roamer::check::check(&args.config.config, &routes)
                .map(|report| {
                    if args.json {
                        serde_json::to_string_pretty(&report)
                            .map(|t| t + "\n")
                            .unwrap_or_default()
                    } else {
                        report.render()
                    }
                })
                .map_err(|e| e.to_string())
        }
        Command::Up(args) => roamgw_roamer::updown::up(&args.run, Duration::from_secs(args.wait))
            .map_err(|e| e.to_string()),
        Command::TcpRelay(args) => roamgw_roamer::relay::tcp_relay(&args),
        Command::Down(args) => roamgw_roamer::updown::down(&args.config, Duration::from_secs(10))
            .map_err(|e| e.to_string()),
        Command::Doctor(args) => match roamgw_roamer::config::read(&args.config.config) {
            Ok(config) => {
                let facts = roamgw_roamer::doctor::gather(&config, &args.config.config);
                let (text, code) = roamgw_common::doctor::report(
                    &roamgw_roamer::doctor::evaluate(&facts),
                    args.json,
                );
                let _ = std::io::stdout().write_all(text.as_bytes());
                return ExitCode::from(code);
            }
            Err(e) => Err(e.to_string()),
        },
        Command::Completions(args) => Ok(roamgw_common::cli::completions(
            <Cli as clap::CommandFactory>::command(),
            args.shell,
        )),
        Command::Man => Ok(roamgw_common::cli::man_page(
            <Cli as clap::CommandFactory>::command(),
        )),
        Command::Status(args) => match roamgw_roamer::config::read(&args.config.config) {
            Ok(config) => {
                let report = roamgw_roamer::status::Report::gather(&config);
                let _ = std::io::stdout().write_all(
                    if args.json {
                        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
                    } else {
                        report.render()
                    }
                    .as_bytes(),
                );
                return if report.running {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(3)
                };
            }
            Err(e) => Err(e.to_string()),
        },
    };
    match result {
        Ok(output) => {
            let _ = std::io::stdout().write_all(output.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roamer: error: {e}");
            ExitCode::FAILURE
        }
    }
}
