//! The roamgw gateway: the CLI's commands over the state store, address detection, and the
//! configs it renders for the other side.

pub mod change;
pub mod cli;
pub mod cloud;
pub mod commands;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod detect;
pub mod device;
pub mod doctor;
pub mod engine;
pub mod flood;
pub mod ha;
pub mod import;
pub mod metrics;
pub mod monitor;
pub mod peer_configs;
pub mod store;
pub mod web;

use cli::{Cli, Command};
use store::Store;

/// What a command prints on stdout, and its exit code (0 unless the command reports a state
/// by it, as `status` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub exit_code: u8,
}

impl From<String> for Outcome {
    fn from(stdout: String) -> Self {
        Outcome {
            stdout,
            exit_code: 0,
        }
    }
}

/// Runs one parsed command.
pub fn dispatch(cli: Cli) -> Result<Outcome, commands::CommandError> {
    let store = Store::new(cli.config_dir);
    let stdout = match cli.command {
        Command::Init(args) => commands::init(&store, args),
        Command::AddRoamer(args) => commands::add_roamer(&store, args),
        Command::RemoveRoamer(args) => commands::remove_roamer(&store, args),
        Command::Roamers(args) => commands::roamers(&store, args.json),
        Command::AddPort(args) => commands::add_port(&store, args),
        Command::Egress(args) => commands::egress(&store, args),
        Command::TcpFallback(args) => commands::tcp_fallback(&store, args),
        Command::Endpoint6(args) => commands::endpoint6(&store, args),
        Command::Forward6(args) => commands::forward6(&store, args),
        Command::RotateKey(args) => commands::rotate_key(&store, args),
        Command::Import(args) => commands::import(&store, args),
        Command::RemovePort(args) => commands::remove_port(&store, args),
        Command::List(args) => commands::list(&store, args.json),
        Command::ShowConfig(args) => commands::show_config(&store, args),
        Command::Rules => commands::rules(&store),
        Command::Up => commands::up(&store),
        Command::Down(args) => commands::down(&store, args.purge),
        Command::Apply(args) => commands::apply(&store, args.dry_run),
        Command::Status(args) => return commands::status(&store, args.json),
        Command::Doctor(args) => return commands::doctor(&store, args.json),
        Command::Run(args) => commands::run(store, args),
        Command::Ha(args) => commands::ha(&store, args),
        Command::Completions(args) => Ok(roamgw_common::cli::completions(
            <Cli as clap::CommandFactory>::command(),
            args.shell,
        )),
        Command::Man => Ok(roamgw_common::cli::man_page(
            <Cli as clap::CommandFactory>::command(),
        )),
    }?;
    Ok(stdout.into())
}
