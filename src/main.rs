//! The `server` binary: parse the command line, run the chosen command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mailwarm::config::Config;

/// mailwarm: recurring e-mail mailings behind a GraphQL API.
#[derive(Parser)]
#[command(name = "server", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the web front end (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL), as committed in graphql/schema.graphql.
    ExportSchema,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    mailwarm::telemetry::init(cli.config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => mailwarm::server::serve(cli.config).await,
        Command::Migrate => mailwarm::server::migrate(cli.config).await,
        Command::ExportSchema => {
            print!("{}", mailwarm::graphql::sdl());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
