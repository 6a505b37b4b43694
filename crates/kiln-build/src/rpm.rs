//! Asking an image's own `rpm` for its packages (the database format, SQLite, Berkeley DB or
//! ndb, is rpm's business, so rpm reads it), inside the image's instance and with a time limit:
//! the program is the image's, and an image whose `rpm` never answers must not hold a build.

use kiln_instance::Instance;
use std::cell::Cell;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs the instance's `rpm` with `args`: its output when it succeeds in time; `None` when it
/// fails, cannot start, or runs past `timeout` (then `timed_out` is set and every process of
/// the instance is stopped).
pub fn query(
    instance: &Instance,
    args: &[&str],
    timeout: Duration,
    timed_out: &Cell<bool>,
) -> Option<String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut child = kiln_toe::target::Target::command(instance, "rpm", &args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Read on a thread of its own, so that a full pipe cannot stall the wait.
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut text).map(|_| text)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                timed_out.set(true);
                // Its children too (they hold the pipe): every process of the instance.
                let _ = instance.stop_processes();
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let text = reader.join().ok()?.ok()?;
    status
        .success()
        .then(|| String::from_utf8_lossy(&text).into_owned())
}

/// The error of a query that ran past `timeout`.
pub fn timed_out_message(timeout: Duration) -> String {
    format!(
        "the image's rpm did not list its packages within {} s",
        timeout.as_secs()
    )
}
