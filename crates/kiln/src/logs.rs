//! `kiln logs`: an image build's log, from the server's `GET /kiln/v1/logs`.
//!
//! Exit codes: 0 when the log was printed (with `--follow`: when the build ended AVAILABLE),
//! 1 when it ended otherwise (FAILED, CANCELLED, ...) or the log could not be read (unknown
//! image, server unreachable), 2 for bad flags.

use crate::client::{Client, EndpointArgs};
use anyhow::{Context, Result};
use std::io::Write;
use std::time::Duration;

/// How often `--follow` asks for more.
const POLL: Duration = Duration::from_millis(200);
/// How long `--follow` waits, once the build ended, for the last lines of a log that another
/// machine's worker is still writing to the database (a worker that died never closes it).
const CLOSE_GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// The image build version ARN (`arn:aws:imagebuilder:REGION:ACCOUNT:image/NAME/VERSION/BUILD`).
    pub image_build_version_arn: String,
    /// Keep printing the log as the build writes it, until the build ends; then exit 0 when
    /// the image is AVAILABLE, 1 otherwise.
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

/// Statuses of an image whose build is still going on; any other status is final.
pub fn is_final(status: &str) -> bool {
    !matches!(
        status,
        "PENDING" | "CREATING" | "BUILDING" | "TESTING" | "DISTRIBUTING" | "INTEGRATING"
    )
}

/// Runs `kiln logs` and answers the process exit code.
pub fn main(args: LogsArgs) -> i32 {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln logs: {e:#}");
            1
        }
    }
}

fn run(args: &LogsArgs) -> Result<i32> {
    let client = Client::new(&args.endpoint)?;
    let mut stdout = std::io::stdout().lock();
    let mut offset: u64 = 0;
    let mut ended_at: Option<std::time::Instant> = None;
    loop {
        let offset_text = offset.to_string();
        let answer = client.get(
            &["logs"],
            &[
                ("imageBuildVersionArn", &args.image_build_version_arn),
                ("offset", &offset_text),
            ],
        )?;
        let status = answer
            .header("x-kiln-image-status")
            .unwrap_or("UNKNOWN")
            .to_string();
        let size = answer
            .header("x-kiln-log-size")
            .and_then(|s| s.parse::<u64>().ok());
        let still_written = answer.header("x-kiln-log-complete") == Some("false");
        let bytes = answer.bytes(client.endpoint())?;
        if !bytes.is_empty() {
            match stdout.write_all(&bytes).and_then(|_| stdout.flush()) {
                Ok(()) => {}
                // `kiln logs ... | head`: the reader has what it wanted.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                Err(e) => return Err(e).context("writing the log to stdout"),
            }
            offset += bytes.len() as u64;
        }
        // The server answers at most a chunk at a time: read on while there is more.
        let more = !bytes.is_empty() && size.is_some_and(|s| offset < s);
        if more {
            continue;
        }
        if !args.follow {
            return Ok(0);
        }
        if is_final(&status) {
            let ended = *ended_at.get_or_insert_with(std::time::Instant::now);
            if still_written && ended.elapsed() < CLOSE_GRACE {
                std::thread::sleep(POLL);
                continue;
            }
            if status != "AVAILABLE" {
                eprintln!("kiln logs: the image is {status}");
                return Ok(1);
            }
            return Ok(0);
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_statuses_are_not_final() {
        for s in [
            "PENDING",
            "CREATING",
            "BUILDING",
            "TESTING",
            "DISTRIBUTING",
            "INTEGRATING",
        ] {
            assert!(!is_final(s), "{s}");
        }
        for s in [
            "AVAILABLE",
            "FAILED",
            "CANCELLED",
            "DELETED",
            "DEPRECATED",
            "UNKNOWN",
        ] {
            assert!(is_final(s), "{s}");
        }
    }
}
