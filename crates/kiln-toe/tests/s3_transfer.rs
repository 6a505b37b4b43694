//! Large transfers (`kiln_toe::actions::net::s3_file`) against moto's `moto_server`, started on
//! 127.0.0.1 from the path in `KILN_TEST_MOTO_SERVER` (CI installs it): single and multipart
//! uploads read back byte for byte, size caps, S3's errors, cancellation.

use kiln_toe::actions::net::s3::Client;
use kiln_toe::actions::net::s3_file::{Transfer, TransferError, MIN_PART_SIZE};
use kiln_toe::actions::S3Config;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BUCKET: &str = "kiln-transfer";

struct Moto {
    child: Child,
    config: S3Config,
}

impl Moto {
    fn start() -> Moto {
        let program = std::env::var("KILN_TEST_MOTO_SERVER")
            .expect("KILN_TEST_MOTO_SERVER must name the moto_server binary (see s3_actions.rs)");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let config = S3Config {
            endpoint: format!("http://127.0.0.1:{port}"),
            region: "us-east-1".into(),
            access_key_id: "kiln".into(),
            secret_access_key: "kiln".into(),
            session_token: None,
        };
        Client::new(&config).create_bucket(BUCKET).unwrap();
        Moto { child, config }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `len` bytes that differ from part to part, so a misordered part shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i / 4096 % 251) as u8).collect()
}

#[test]
fn uploads_and_downloads_stream_whole_objects() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let transfer = Transfer::new(&moto.config).part_size(MIN_PART_SIZE);

    // Multipart: three parts, the last one short.
    let big = pattern(2 * MIN_PART_SIZE as usize + 12345);
    let source = dir.path().join("big.raw");
    std::fs::File::create(&source)
        .unwrap()
        .write_all(&big)
        .unwrap();
    let uploaded = transfer
        .upload(BUCKET, "disks/big one.raw", &source)
        .unwrap();
    assert_eq!((uploaded.size, uploaded.parts), (big.len() as u64, 3));
    let back = dir.path().join("back.raw");
    let size = transfer
        .download(BUCKET, "disks/big one.raw", &back, u64::MAX)
        .unwrap();
    assert_eq!(size, big.len() as u64);
    assert!(std::fs::read(&back).unwrap() == big, "the bytes came back");

    // One PUT, checked against its ETag on the way back.
    let small = pattern(1000);
    std::fs::write(&source, &small).unwrap();
    let uploaded = transfer.upload(BUCKET, "small.raw", &source).unwrap();
    assert_eq!(uploaded.parts, 1);
    transfer.download(BUCKET, "small.raw", &back, 1000).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), small);

    // Too big: refused, and nothing is left behind.
    let err = transfer
        .download(BUCKET, "small.raw", &dir.path().join("capped"), 999)
        .unwrap_err();
    assert!(err.to_string().contains("at most 999 bytes"), "{err}");
    assert!(!dir.path().join("capped").exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    // S3's own errors name the object.
    let err = transfer
        .download(BUCKET, "missing.raw", &back, u64::MAX)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("s3://kiln-transfer/missing.raw") && err.contains("NoSuchKey"),
        "{err}"
    );
    let err = transfer
        .upload("no-such-bucket", "k", &source)
        .unwrap_err()
        .to_string();
    assert!(err.contains("NoSuchBucket"), "{err}");
}

#[test]
fn a_cancelled_transfer_stops() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.raw");
    std::fs::write(&source, pattern(3 * MIN_PART_SIZE as usize)).unwrap();
    let stop = AtomicBool::new(false);
    let check = || stop.load(Ordering::SeqCst);
    let transfer = Transfer::new(&moto.config)
        .part_size(MIN_PART_SIZE)
        .cancel_when(&check);
    transfer.upload(BUCKET, "big.raw", &source).unwrap();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(
        transfer.download(BUCKET, "big.raw", &dir.path().join("back"), u64::MAX),
        Err(TransferError::Cancelled)
    );
    assert_eq!(
        transfer.upload(BUCKET, "again.raw", &source),
        Err(TransferError::Cancelled)
    );
}
