//! The `server` binary: parse the command line, run the chosen command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mailwarm::accounts::role::Role;
use mailwarm::config::Config;
use mailwarm::server::Mode;

/// mailwarm: recurring e-mail mailings behind a GraphQL API.
#[derive(Parser)]
#[command(name = "server", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Serve the API only; other instances dispatch.
    #[arg(long, conflicts_with_all = ["dispatch_only", "dispatch_once"])]
    no_dispatch: bool,

    /// Dispatch only, without the HTTP API.
    #[arg(long, conflicts_with = "dispatch_once")]
    dispatch_only: bool,

    /// Start the runs that are due, send every due delivery, print a summary and exit
    /// (safe from cron beside running instances).
    #[arg(long)]
    dispatch_once: bool,

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
    /// Print the DNS records to publish for MAIL_FROM's domain: DKIM (the key of
    /// DKIM_PRIVATE_KEY), an SPF hint, a DMARC policy to start with.
    DnsRecords,
    /// Create an account that can sign in at once; the password is read from standard input.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        full_name: String,
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    User,
    Manager,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::User => Role::User,
            RoleArg::Manager => Role::Manager,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// The first line of standard input, without its line end.
fn read_password() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    mailwarm::telemetry::init(cli.config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let mode = if cli.dispatch_once {
                Mode::DispatchOnce
            } else if cli.dispatch_only {
                Mode::DispatchOnly
            } else if cli.no_dispatch {
                Mode::ServeOnly
            } else {
                Mode::ServeAndDispatch
            };
            mailwarm::server::run(cli.config, mode).await
        }
        Command::Migrate => mailwarm::server::migrate(cli.config).await,
        Command::ExportSchema => {
            print!("{}", mailwarm::graphql::sdl());
            Ok(())
        }
        Command::DnsRecords => match cli.config.validate() {
            Ok(()) => {
                let mail = &cli.config.mail;
                let dkim = match (&mail.dkim_domain, &mail.dkim_selector, &mail.dkim_private_key) {
                    (Some(domain), Some(selector), Some(key)) => Some((domain.as_str(), selector.as_str(), key)),
                    _ => None,
                };
                let relay = mail.smtp_url.as_ref().and_then(|url| url.host_str());
                let from_domain = mail.mail_from.email.domain();
                print!("{}", mailwarm::mail::dkim::dns_records(from_domain, relay, dkim));
                let bounces = &cli.config.bounces;
                if let Some(bounce) = &bounces.bounce_address {
                    let mailbox = bounces.bounce_imap_url.as_ref().and_then(|url| url.host_str());
                    print!(
                        "{}",
                        mailwarm::deliverability::verp::dns_records(bounce, from_domain, relay, mailbox)
                    );
                }
                Ok(())
            }
            Err(err) => Err(anyhow::anyhow!(err)),
        },
        Command::CreateUser { email, full_name, role } => match read_password() {
            Ok(password) => mailwarm::server::create_user(cli.config, &email, &full_name, role.into(), &password).await,
            Err(err) => Err(anyhow::anyhow!("cannot read the password from standard input: {err}")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
