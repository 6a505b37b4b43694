//! `exports::export_to_s3` against moto's `moto_server` (from `KILN_TEST_MOTO_SERVER`, which CI
//! installs): an AMI's disk image goes to S3 at EC2's key, in each format, signed with a key of
//! the AMI's owner from the credentials file; read back, `qemu-img info` names its format and
//! the file system holds the image's files. A refused upload names the bucket, the key and the
//! cause. Needs root, busybox-static, e2fsprogs and qemu-utils (the disk is made for real).

use kiln_core::Core;
use kiln_domain::resources::ami::{Ami, LaunchPermissions};
use kiln_domain::resources::distribution::{DiskImageFormat, S3Export};
use kiln_instance::RecordingPrivileged;
use kiln_toe::actions::net::s3::Client;
use kiln_toe::actions::net::s3_file::Transfer;
use kiln_toe::actions::S3Config;
use kiln_worker::logs::BuildLog;
use kiln_worker::s3::S3Settings;
use kiln_worker::{Worker, WorkerConfig};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OWNER: &str = "111111111111";
const BUILD_ID: &str = "00112233445566ff";

struct Moto(Child, String);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto() -> Moto {
    let program = std::env::var("KILN_TEST_MOTO_SERVER")
        .expect("KILN_TEST_MOTO_SERVER must name the moto_server binary");
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
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto(child, format!("http://127.0.0.1:{port}"))
}

fn ami() -> Ami {
    Ami {
        arn: Ami::key("us-east-1", OWNER, "ami-000112233445566ff"),
        image_id: "ami-000112233445566ff".into(),
        name: "exported".into(),
        description: None,
        source_image: format!("arn:aws:imagebuilder:us-east-1:{OWNER}:image/app/1.0.0/1"),
        build_id: BUILD_ID.into(),
        image_digest: None,
        os_version: None,
        platform: "Linux".into(),
        creation_date: 0,
        tags: Default::default(),
        launch_permission: LaunchPermissions::default(),
        kms_key_id: None,
        deprecation_time: None,
        exports: Vec::new(),
        disabled: false,
        last_launched: None,
    }
}

#[test]
fn an_amis_disk_goes_to_s3_in_each_format() {
    let moto = moto();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!("[owner]\naws_access_key_id = AKIAOWNEROWNEROWNER0\naws_secret_access_key = s\naws_account_id = {OWNER}\n"),
    )
    .unwrap();
    let core = Arc::new(Core::open(&data, kiln_store::sqlite::Sync::Normal).unwrap());
    let mut config = WorkerConfig::new(&data);
    config.concurrency = 0;
    config.s3 = Some(S3Settings {
        endpoint: moto.1.clone(),
        region: "us-east-1".into(),
        credentials: Some(credentials),
        fallback_key: None,
    });
    let worker = Worker::open(core.clone(), config, Arc::new(RecordingPrivileged::new())).unwrap();
    let shared = worker.shared();
    // The AMI's contents: the busybox base under the build's store tag.
    shared
        .store
        .busybox_base(&kiln_worker::run::store_tag(BUILD_ID))
        .unwrap();
    let log = BuildLog::create(
        &shared.config.logs_dir(),
        BUILD_ID,
        "arn:test",
        core.clock.clone(),
    )
    .unwrap();
    let s3 = S3Config {
        endpoint: moto.1.clone(),
        region: "us-east-1".into(),
        access_key_id: "AKIAOWNEROWNEROWNER0".into(),
        secret_access_key: "s".into(),
        session_token: None,
    };
    Client::new(&s3).create_bucket("exports").unwrap();

    for (format, qemu, ext) in [
        (DiskImageFormat::Vmdk, "vmdk", "vmdk"),
        (DiskImageFormat::Raw, "raw", "raw"),
        (DiskImageFormat::Vhd, "vpc", "vhd"),
    ] {
        let export = S3Export {
            role_name: "vmimport".into(),
            disk_image_format: format,
            s3_bucket: "exports".into(),
            s3_prefix: Some("amis/".into()),
        };
        let record = kiln_worker::exports::export_to_s3(shared, &ami(), &export, &log).unwrap();
        assert!(record.task_id.starts_with("export-ami-0"), "{record:?}");
        assert_eq!(record.s3_key, format!("amis/{}.{ext}", record.task_id));
        assert_eq!(
            (record.s3_bucket.as_str(), record.role_name.as_str()),
            ("exports", "vmimport")
        );
        let back = dir.path().join(format!("back.{ext}"));
        let size = Transfer::new(&s3)
            .download("exports", &record.s3_key, &back, u64::MAX)
            .unwrap();
        assert_eq!(size, record.size);
        // A fixed VHD probes as raw; the format is given, as its readers do.
        let info = Command::new("qemu-img")
            .args(["info", "--output=json", "-f", qemu])
            .arg(&back)
            .output()
            .unwrap();
        assert!(
            info.status.success(),
            "{}",
            String::from_utf8_lossy(&info.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["format"], qemu, "{ext}");
        if format == DiskImageFormat::Vmdk {
            assert_eq!(
                info["format-specific"]["data"]["create-type"],
                "streamOptimized"
            );
        }
        // The file system is the image's.
        let raw = dir.path().join(format!("check-{ext}.raw"));
        let convert = Command::new("qemu-img")
            .args(["convert", "-f", qemu, "-O", "raw"])
            .arg(&back)
            .arg(&raw)
            .status()
            .unwrap();
        assert!(convert.success());
        let ls = Command::new("debugfs")
            .args(["-R", "ls -p /bin"])
            .arg(&raw)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&ls.stdout).contains("/busybox/"),
            "{ext}"
        );
    }
    // Nothing is left in the worker's temporary directory.
    assert_eq!(
        std::fs::read_dir(shared.config.tmp_dir()).unwrap().count(),
        0
    );

    // Refused: the error names the bucket, the key and S3's answer.
    let export = S3Export {
        role_name: "vmimport".into(),
        disk_image_format: DiskImageFormat::Raw,
        s3_bucket: "no-such-bucket".into(),
        s3_prefix: None,
    };
    let err = kiln_worker::exports::export_to_s3(shared, &ami(), &export, &log).unwrap_err();
    assert!(
        err.contains("s3://no-such-bucket/export-ami-0") && err.contains("NoSuchBucket"),
        "{err}"
    );
    // An account with no key and no fallback cannot export.
    let mut other = ami();
    other.arn = Ami::key("us-east-1", "222222222222", &other.image_id);
    let err = kiln_worker::exports::export_to_s3(shared, &other, &export, &log).unwrap_err();
    assert!(err.contains("account 222222222222"), "{err}");
}
