//! `kiln credentials create`: a new key pair for an account, appended to a credentials file.
//!
//! The file is in the AWS shared credentials format, so the same file serves `kiln serve
//! --credentials FILE` and the aws CLI (`AWS_SHARED_CREDENTIALS_FILE=FILE aws --profile NAME`).
//! A running server picks the new key up on SIGHUP.

use anyhow::{bail, Context, Result};
use kiln_auth::credentials::{append, free_profile_name, is_account_id, Key};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum CredentialsCommand {
    /// Append a new key pair for an account to a credentials file and print it.
    Create(CreateArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The 12-digit account the key acts as.
    #[arg(long)]
    pub account: String,
    /// The profile name (default: `default` in a new file, otherwise `account-<id>`).
    #[arg(long)]
    pub profile: Option<String>,
    /// The credentials file (created with mode 0600 if missing).
    #[arg(
        long,
        env = "KILN_CREDENTIALS",
        default_value = "./kiln-data/credentials"
    )]
    pub file: PathBuf,
    /// Make a temporary key (ASIA..., with a session token) valid for this many minutes.
    #[arg(long, value_name = "MINUTES")]
    pub expires_in: Option<u32>,
}

pub fn main(command: CredentialsCommand) -> i32 {
    let result = match command {
        CredentialsCommand::Create(args) => create(&args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln credentials: {e:#}");
            1
        }
    }
}

fn create(args: &CreateArgs) -> Result<()> {
    if !is_account_id(&args.account) {
        bail!("--account '{}' must be 12 digits", args.account);
    }
    let expires = match args.expires_in {
        Some(0) => bail!("--expires-in must be at least 1 minute"),
        Some(m) => Some(chrono::Utc::now() + chrono::Duration::minutes(i64::from(m))),
        None => None,
    };
    let profile = free_profile_name(&args.file, args.profile.as_deref(), &args.account)?;
    let key = Key::generate(&profile, &args.account, expires);
    append(&args.file, &key).with_context(|| "appending the new key")?;
    eprintln!(
        "added profile [{profile}] to {} (a running kiln serve picks it up on SIGHUP)",
        args.file.display()
    );
    print!("{}", key.to_ini());
    Ok(())
}
