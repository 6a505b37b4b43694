//! The store itself: blobs, the index and its lock, commits, tags, lower directories,
//! exports, imports of OCI layouts, and garbage collection.

use crate::hash::{self, Compressor, HashingReader, HashingWriter};
use crate::layer::{LayerWriter, UpperWalk};
use crate::pin::Pinned;
use crate::unpack::{Mode, Unpacker};
use crate::{io_err, Compression, Error, ImageRef, LayerInfo, Result};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageIndex,
    ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os,
    ANNOTATION_REF_NAME,
};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// What goes into the image configuration of a commit besides the layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitMeta {
    /// GOARCH name, `amd64` by default. Ignored (the parent's is kept) when there is a parent.
    pub architecture: String,
    /// GOOS name, `linux` by default. Ignored when there is a parent.
    pub os: String,
    /// RFC 3339 creation time; now when `None`.
    pub created: Option<String>,
    /// The history entry's `created_by`.
    pub created_by: Option<String>,
    /// The history entry's `comment`.
    pub comment: Option<String>,
    /// Labels added to (or replacing those of) the parent's configuration.
    pub labels: BTreeMap<String, String>,
    /// The whole execution configuration (`config` in the image configuration: `Env`, `Cmd`,
    /// `Entrypoint`, `User`, `WorkingDir`, `Labels`, ...), replacing the parent's; Docker's own
    /// members (`Healthcheck`, `OnBuild`, `Shell`) are kept as given. `labels` still apply.
    pub config: Option<serde_json::Value>,
    /// The image's `author`.
    pub author: Option<String>,
}

impl Default for CommitMeta {
    fn default() -> Self {
        CommitMeta {
            architecture: "amd64".to_string(),
            os: "linux".to_string(),
            created: None,
            created_by: None,
            comment: None,
            labels: BTreeMap::new(),
            config: None,
            author: None,
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn unique_name(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        ".tmp-{what}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The hex part of a `sha256:<hex>` digest, checked.
pub(crate) fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| Error::Invalid(format!("unsupported digest `{digest}` (only sha256)")))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::Invalid(format!("malformed digest `{digest}`")));
    }
    Ok(hex)
}

pub(crate) fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty()
        || tag.len() > 255
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/@+".contains(&b))
    {
        return Err(Error::Invalid(format!(
            "bad tag `{tag}`: use 1-255 characters among letters, digits and . _ - : / @ +"
        )));
    }
    Ok(())
}

fn json_err(what: impl Into<String>) -> impl FnOnce(oci_spec::OciSpecError) -> Error {
    let what = what.into();
    move |e| Error::Json {
        what,
        message: e.to_string(),
    }
}

fn tag_of(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

/// An exclusive `flock` held until dropped.
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(crate) fn acquire(path: &Path) -> Result<FileLock> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("opening lock file", path))?;
        FileLock::lock_file(&file, path)?;
        Ok(FileLock { _file: file })
    }

    /// Takes an exclusive `flock` on `file`, waiting for it.
    pub(crate) fn lock_file(file: &File, path: &Path) -> Result<()> {
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_err("locking", path)(e));
            }
        }
    }
}

/// An OCI image layout on disk plus Kiln's caches; see the crate documentation for the layout.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    tmp: PathBuf,
    lock: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<ImageStore> {
        let store = ImageStore {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            lock: root.join("index.lock"),
        };
        for dir in [
            root.join("blobs/sha256"),
            store.tmp.clone(),
            root.join("unpacked"),
        ] {
            fs::create_dir_all(&dir).map_err(io_err("creating directory", &dir))?;
        }
        store.init_layout()?;
        Ok(store)
    }

    /// A bare OCI layout (for exports): no caches, temporary files and the lock in `blobs/`.
    fn open_plain(root: &Path) -> Result<ImageStore> {
        let store = ImageStore {
            root: root.to_path_buf(),
            tmp: root.join("blobs"),
            lock: root.join("blobs/.kiln-index.lock"),
        };
        let dir = root.join("blobs/sha256");
        fs::create_dir_all(&dir).map_err(io_err("creating directory", &dir))?;
        store.init_layout()?;
        Ok(store)
    }

    fn init_layout(&self) -> Result<()> {
        let layout = self.root.join("oci-layout");
        if !layout.exists() {
            let l = OciLayoutBuilder::default()
                .image_layout_version("1.0.0")
                .build()
                .map_err(json_err("oci-layout"))?;
            let text = l.to_string().map_err(json_err("oci-layout"))?;
            self.write_atomic(&layout, text.as_bytes())?;
        }
        let _lock = FileLock::acquire(&self.lock)?;
        if !self.index_path().exists() {
            self.write_index(&empty_index()?)?;
        }
        Ok(())
    }

    /// The root directory of the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// The path of a blob (which may not exist).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// The index lock file (see the crate documentation).
    pub(crate) fn lock_path(&self) -> &Path {
        &self.lock
    }

    /// The store's temporary directory.
    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// A fresh, unused path in the store's temporary directory.
    pub(crate) fn temp_path(&self, what: &str) -> PathBuf {
        self.tmp.join(unique_name(what))
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let tmp = self.temp_path("file");
        let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        f.write_all(data).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("renaming into place", path))
    }

    fn put_blob(&self, data: &[u8]) -> Result<String> {
        let digest = hash::sha256_of(data);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            self.write_atomic(&path, data)?;
        }
        Ok(digest)
    }

    /// Renames the finished temporary file `tmp` to blob `digest`, pinned first (under the
    /// index lock) so that no collection removes it before it is committed.
    fn place_pinned(&self, tmp: &Path, digest: &str) -> Result<crate::Pin> {
        let path = self.blob_path(digest)?;
        let _lock = FileLock::acquire(&self.lock)?;
        let pin = self.pin_locked(&[Pinned::Blob(digest.to_string())])?;
        fs::rename(tmp, &path).map_err(io_err("renaming into place", &path))?;
        Ok(pin)
    }

    /// Every blob `image` needs (manifest, configuration, layers) is in the store.
    pub(crate) fn check_whole(&self, image: &ImageRef) -> Result<()> {
        let manifest = self.manifest(image)?;
        let mut digests = vec![manifest.config().digest().to_string()];
        digests.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
        for d in digests {
            if !self.blob_path(&d)?.exists() {
                return Err(Error::MissingBlob(d));
            }
        }
        Ok(())
    }

    fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::MissingBlob(digest.to_string()))
            }
            Err(e) => return Err(io_err("reading", path)(e)),
        };
        let actual = hash::sha256_of(&data);
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {}", path.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(data)
    }

    fn read_index(&self) -> Result<ImageIndex> {
        read_index_at(&self.root)
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let text = index.to_string().map_err(json_err("index.json"))?;
        self.write_atomic(&self.index_path(), text.as_bytes())
    }

    /// Runs `f` on index.json under the lock and writes the result back.
    fn update_index<T>(&self, f: impl FnOnce(&mut ImageIndex) -> Result<T>) -> Result<T> {
        let _lock = FileLock::acquire(&self.lock)?;
        self.update_index_locked(f)
    }

    /// [`ImageStore::update_index`] for a caller that holds the lock.
    fn update_index_locked<T>(&self, f: impl FnOnce(&mut ImageIndex) -> Result<T>) -> Result<T> {
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        self.write_index(&index)?;
        Ok(out)
    }

    /// Every tagged image, in index order.
    pub fn images(&self) -> Result<Vec<ImageRef>> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .filter_map(|d| {
                tag_of(d).map(|t| ImageRef {
                    digest: d.digest().to_string(),
                    tag: t.to_string(),
                })
            })
            .collect())
    }

    /// The image a tag names.
    pub fn resolve(&self, tag: &str) -> Result<ImageRef> {
        self.images()?
            .into_iter()
            .find(|i| i.tag == tag)
            .ok_or_else(|| Error::UnknownTag(tag.to_string()))
    }

    /// The manifest of an image.
    pub fn manifest(&self, image: &ImageRef) -> Result<ImageManifest> {
        let data = self.read_blob(&image.digest)?;
        ImageManifest::from_reader(data.as_slice())
            .map_err(json_err(format!("manifest {}", image.digest)))
    }

    /// The configuration of an image.
    pub fn config(&self, image: &ImageRef) -> Result<ImageConfiguration> {
        let manifest = self.manifest(image)?;
        self.config_of(&manifest)
    }

    fn config_of(&self, manifest: &ImageManifest) -> Result<ImageConfiguration> {
        let digest = manifest.config().digest().to_string();
        let data = self.read_blob(&digest)?;
        ImageConfiguration::from_reader(data.as_slice())
            .map_err(json_err(format!("image config {digest}")))
    }

    /// Writes a layer produced by `fill` as a new blob: one pass, hashing the compressed bytes
    /// (blob digest) and the uncompressed tar (diff_id) as they stream to a temporary file.
    pub(crate) fn write_layer(
        &self,
        compression: Compression,
        fill: impl FnOnce(
            &mut LayerWriter<
                HashingWriter<
                    Compressor<HashingWriter<BufWriter<crate::writeback::WritebackFile>>>,
                >,
            >,
        ) -> Result<()>,
    ) -> Result<LayerInfo> {
        let tmp = self.temp_path("layer");
        let result = (|| {
            let file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
            let file = crate::writeback::WritebackFile::new(file);
            let outer = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
            let comp = Compressor::new(outer, compression)
                .map_err(io_err("starting compression for", &tmp))?;
            let mut writer = LayerWriter::new(HashingWriter::new(comp));
            fill(&mut writer)?;
            let inner = writer.finish().map_err(io_err("writing", &tmp))?;
            let (comp, diff_id, _) = inner.finish();
            let outer = comp.finish().map_err(io_err("writing", &tmp))?;
            let (buf, digest, size) = outer.finish();
            let file = buf
                .into_inner()
                .map_err(|e| io_err("writing", &tmp)(e.into_error()))?
                .into_file();
            file.sync_all().map_err(io_err("syncing", &tmp))?;
            let pin = self.place_pinned(&tmp, &digest)?;
            let media_type = match compression {
                Compression::Zstd => MediaType::ImageLayerZstd,
                Compression::Gzip => MediaType::ImageLayerGzip,
            };
            Ok(LayerInfo {
                descriptor: Descriptor::new(media_type, size, digest_of(&digest)?),
                diff_id,
                pin: Some(std::sync::Arc::new(pin)),
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Turns an overlay upper directory into a new layer blob (see the crate documentation).
    pub fn snapshot_layer(&self, upper: &Path, compression: Compression) -> Result<LayerInfo> {
        let md = fs::metadata(upper).map_err(io_err("reading", upper))?;
        if !md.is_dir() {
            return Err(Error::Invalid(format!(
                "{} is not a directory",
                upper.display()
            )));
        }
        self.write_layer(compression, |w| UpperWalk::new(w).walk(upper, b""))
    }

    /// Makes an image of `parent`'s layers plus `layer`, and tags it (replacing the tag's
    /// previous image, if any).
    pub fn commit(
        &self,
        parent: Option<&ImageRef>,
        layer: LayerInfo,
        meta: &CommitMeta,
        tag: &str,
    ) -> Result<ImageRef> {
        check_tag(tag)?;
        let layer_digest = layer.descriptor.digest().to_string();
        if !self.blob_path(&layer_digest)?.exists() {
            return Err(Error::MissingBlob(layer_digest));
        }
        digest_hex(&layer.diff_id)?;
        let (mut config, mut layers) = match parent {
            Some(p) => {
                let manifest = self.manifest(p)?;
                (self.config_of(&manifest)?, manifest.layers().clone())
            }
            None => {
                let mut c = ImageConfiguration::default();
                c.set_architecture(Arch::from(meta.architecture.as_str()));
                c.set_os(Os::from(meta.os.as_str()));
                (c, Vec::new())
            }
        };
        let created = meta.created.clone().unwrap_or_else(|| {
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        config
            .rootfs_mut()
            .diff_ids_mut()
            .push(layer.diff_id.clone());
        let mut history = HistoryBuilder::default().created(created.clone());
        if let Some(c) = &meta.created_by {
            history = history.created_by(c.clone());
        }
        if let Some(c) = &meta.comment {
            history = history.comment(c.clone());
        }
        let history = history.build().map_err(json_err("history"))?;
        let mut all_history = config.history().clone().unwrap_or_default();
        all_history.push(history);
        config.set_history(Some(all_history));
        config.set_created(Some(created));
        if !meta.labels.is_empty() {
            let mut inner = config
                .config()
                .clone()
                .unwrap_or_else(|| ConfigBuilder::default().build().unwrap_or_default());
            let mut labels = inner.labels().clone().unwrap_or_default();
            for (k, v) in &meta.labels {
                labels.insert(k.clone(), v.clone());
            }
            inner.set_labels(Some(labels));
            config.set_config(Some(inner));
        }
        if let Some(author) = &meta.author {
            config.set_author(Some(author.clone()));
        }
        let config_text = match &meta.config {
            None => config.to_string().map_err(json_err("image config"))?,
            Some(execution) => with_execution_config(&config, execution, &meta.labels)?,
        };
        layers.push(layer.descriptor.clone());
        // From here on under the index lock, so no collection runs between the blobs being
        // written and the tag naming them; the parent's layers are checked again, since the
        // parent may have been deleted and collected after it was read (a caller that pins
        // it, as builds do, never sees that).
        let _lock = FileLock::acquire(&self.lock)?;
        for l in &layers {
            let d = l.digest().to_string();
            if !self.blob_path(&d)?.exists() {
                return Err(Error::MissingBlob(d));
            }
        }
        let config_digest = self.put_blob(config_text.as_bytes())?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_text.len() as u64,
                digest_of(&config_digest)?,
            ))
            .layers(layers)
            .build()
            .map_err(json_err("manifest"))?;
        let manifest_text = manifest.to_string().map_err(json_err("manifest"))?;
        let manifest_digest = self.put_blob(manifest_text.as_bytes())?;
        let image = ImageRef {
            digest: manifest_digest,
            tag: tag.to_string(),
        };
        self.set_tag_locked(&image, manifest_text.len() as u64, &image.tag)?;
        // The layer's pin goes only now that the tag names it.
        drop(layer);
        Ok(image)
    }

    fn set_tag(&self, image: &ImageRef, manifest_size: u64, tag: &str) -> Result<()> {
        let _lock = FileLock::acquire(&self.lock)?;
        self.set_tag_locked(image, manifest_size, tag)
    }

    fn set_tag_locked(&self, image: &ImageRef, manifest_size: u64, tag: &str) -> Result<()> {
        check_tag(tag)?;
        let mut desc = Descriptor::new(
            MediaType::ImageManifest,
            manifest_size,
            digest_of(&image.digest)?,
        );
        desc.set_annotations(Some(HashMap::from([(
            ANNOTATION_REF_NAME.to_string(),
            tag.to_string(),
        )])));
        self.update_index_locked(|index| {
            let mut list = index.manifests().clone();
            list.retain(|d| tag_of(d) != Some(tag));
            list.push(desc);
            index.set_manifests(list);
            Ok(())
        })
    }

    /// Gives an existing image another tag.
    pub fn tag(&self, image: &ImageRef, tag: &str) -> Result<ImageRef> {
        let size = fs::metadata(self.blob_path(&image.digest)?)
            .map_err(|_| Error::MissingBlob(image.digest.clone()))?
            .len();
        self.set_tag(image, size, tag)?;
        Ok(ImageRef {
            digest: image.digest.clone(),
            tag: tag.to_string(),
        })
    }

    /// Removes a tag. Blobs stay until [`ImageStore::gc`].
    pub fn delete(&self, tag: &str) -> Result<()> {
        self.update_index(|index| {
            let mut list = index.manifests().clone();
            list.retain(|d| tag_of(d) != Some(tag));
            if list.len() == index.manifests().len() {
                return Err(Error::UnknownTag(tag.to_string()));
            }
            index.set_manifests(list);
            Ok(())
        })
    }

    fn layers_with_diff_ids(&self, image: &ImageRef) -> Result<Vec<(Descriptor, String)>> {
        let manifest = self.manifest(image)?;
        let config = self.config_of(&manifest)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::Invalid(format!(
                "image {}: {} layers but {} diff_ids",
                image.digest,
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        Ok(manifest
            .layers()
            .iter()
            .cloned()
            .zip(diff_ids.iter().cloned())
            .collect())
    }

    /// Applies a layer blob to `dest`, checking that the uncompressed tar has `diff_id`.
    fn apply_layer(
        &self,
        layer: &Descriptor,
        diff_id: &str,
        dest: &Path,
        mode: Mode,
    ) -> Result<()> {
        let digest = layer.digest().to_string();
        let path = self.blob_path(&digest)?;
        let file = File::open(&path).map_err(|_| Error::MissingBlob(digest.clone()))?;
        let (reader, _) = hash::decompress(file).map_err(io_err("reading", &path))?;
        let hashing = HashingReader::new(reader);
        let rest = Unpacker::new(dest, mode).apply(hashing)?;
        let (actual, _) = rest.drain_and_finish().map_err(io_err("reading", &path))?;
        if actual != diff_id {
            return Err(Error::DigestMismatch {
                what: format!("uncompressed layer {digest}"),
                expected: diff_id.to_string(),
                actual,
            });
        }
        Ok(())
    }

    /// The image's layers unpacked as overlay lower directories, topmost first (the order of
    /// overlay's `lowerdir=`). Each layer is unpacked once, into `unpacked/<diff_id hex>`.
    pub fn lower_dirs(&self, image: &ImageRef) -> Result<Vec<PathBuf>> {
        // Kept while unpacking; the caller pins the image (or holds its tag) while it mounts them.
        let _pin = self.pin_image(image)?;
        let mut dirs = Vec::new();
        for (layer, diff_id) in self.layers_with_diff_ids(image)? {
            let dir = self.root.join("unpacked").join(digest_hex(&diff_id)?);
            if !dir.is_dir() {
                let tmp = self.root.join("unpacked").join(unique_name("unpack"));
                fs::create_dir(&tmp).map_err(io_err("creating directory", &tmp))?;
                if let Err(e) = self.apply_layer(&layer, &diff_id, &tmp, Mode::Overlay) {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(e);
                }
                if fs::rename(&tmp, &dir).is_err() {
                    // Someone else unpacked it first (rename onto a non-empty dir fails).
                    let _ = fs::remove_dir_all(&tmp);
                    if !dir.is_dir() {
                        return Err(Error::Invalid(format!(
                            "could not move {} into place",
                            dir.display()
                        )));
                    }
                }
            }
            dirs.push(dir);
        }
        dirs.reverse();
        Ok(dirs)
    }

    /// Applies all of the image's layers in order into `dest` (created if missing; it should
    /// be empty), deleting whatever whiteouts delete.
    pub fn merged_rootfs(&self, image: &ImageRef, dest: &Path) -> Result<()> {
        let _pin = self.pin_image(image)?;
        fs::create_dir_all(dest).map_err(io_err("creating directory", dest))?;
        for (layer, diff_id) in self.layers_with_diff_ids(image)? {
            self.apply_layer(&layer, &diff_id, dest, Mode::Merged)?;
        }
        Ok(())
    }

    /// Copies a blob from a file into the store (if not there yet), checking digest and size.
    fn copy_blob_in(&self, src: &Path, digest: &str, size: Option<u64>) -> Result<()> {
        let dst = self.blob_path(digest)?;
        if dst.exists() {
            return Ok(());
        }
        let tmp = self.temp_path("copy");
        let result = (|| {
            let (file, actual, n) = copy_hashed(src, &tmp)?;
            if actual != digest || size.is_some_and(|s| s != n) {
                return Err(Error::DigestMismatch {
                    what: format!("blob {}", src.display()),
                    expected: format!(
                        "{digest} ({} bytes)",
                        size.map_or("?".into(), |s| s.to_string())
                    ),
                    actual: format!("{actual} ({n} bytes)"),
                });
            }
            file.sync_all().map_err(io_err("syncing", &tmp))?;
            fs::rename(&tmp, &dst).map_err(io_err("renaming into place", &dst))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Copies `image` with all its blobs from `from` into this store under `tag`.
    fn copy_image_from(
        &self,
        from: &Path,
        manifest_desc: &Descriptor,
        tag: &str,
        pin: bool,
    ) -> Result<ImageRef> {
        check_tag(tag)?;
        let digest = manifest_desc.digest().to_string();
        let manifest_path = from.join("blobs/sha256").join(digest_hex(&digest)?);
        let data = fs::read(&manifest_path).map_err(io_err("reading", &manifest_path))?;
        if hash::sha256_of(&data) != digest {
            return Err(Error::DigestMismatch {
                what: format!("manifest {}", manifest_path.display()),
                expected: digest,
                actual: hash::sha256_of(&data),
            });
        }
        let manifest = ImageManifest::from_reader(data.as_slice())
            .map_err(json_err(format!("manifest {}", manifest_path.display())))?;
        let mut blobs = vec![manifest.config().clone()];
        blobs.extend(manifest.layers().iter().cloned());
        // An import pins what it copies in until the tag names it (an export's target is a
        // plain layout with nothing to collect).
        let _pin = match pin {
            true => {
                let _lock = FileLock::acquire(&self.lock)?;
                let mut entries = vec![Pinned::Blob(digest.clone())];
                entries.extend(blobs.iter().map(|b| Pinned::Blob(b.digest().to_string())));
                Some(self.pin_locked(&entries)?)
            }
            false => None,
        };
        for b in &blobs {
            let d = b.digest().to_string();
            let src = from.join("blobs/sha256").join(digest_hex(&d)?);
            self.copy_blob_in(&src, &d, Some(b.size()))?;
        }
        self.copy_blob_in(&manifest_path, &digest, None)?;
        let image = ImageRef {
            digest,
            tag: tag.to_string(),
        };
        self.set_tag(&image, data.len() as u64, tag)?;
        Ok(image)
    }

    /// Writes `image` as a standalone OCI layout at `dest` (created, or added to if it is
    /// already a layout), tagged `tag`.
    pub fn export_oci_layout(&self, image: &ImageRef, dest: &Path, tag: &str) -> Result<ImageRef> {
        let _pin = self.pin_image(image)?;
        let out = ImageStore::open_plain(dest)?;
        let desc = Descriptor::new(MediaType::ImageManifest, 0, digest_of(&image.digest)?);
        let r = out.copy_image_from(&self.root, &desc, tag, false);
        let _ = fs::remove_file(&out.lock);
        r
    }

    /// Imports the image tagged `tag_in` from the OCI layout at `dir` as `tag`. A tag naming
    /// an image index picks its linux/amd64 manifest (or its only one).
    pub fn import_oci_layout(&self, dir: &Path, tag_in: &str, tag: &str) -> Result<ImageRef> {
        let index = read_index_at(dir)?;
        let desc = index
            .manifests()
            .iter()
            .find(|d| tag_of(d) == Some(tag_in))
            .or_else(|| match index.manifests().as_slice() {
                [only] if tag_in.is_empty() => Some(only),
                _ => None,
            })
            .ok_or_else(|| {
                Error::Invalid(format!("no image tagged `{tag_in}` in {}", dir.display()))
            })?
            .clone();
        let desc = if *desc.media_type() == MediaType::ImageIndex {
            let p = dir
                .join("blobs/sha256")
                .join(digest_hex(desc.digest().as_ref())?);
            let nested =
                ImageIndex::from_file(&p).map_err(json_err(format!("index {}", p.display())))?;
            let pick = nested
                .manifests()
                .iter()
                .find(|m| {
                    m.platform()
                        .as_ref()
                        .is_some_and(|p| *p.architecture() == Arch::Amd64 && *p.os() == Os::Linux)
                })
                .or_else(|| match nested.manifests().as_slice() {
                    [only] => Some(only),
                    _ => None,
                })
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "`{tag_in}` in {} has no linux/amd64 image",
                        dir.display()
                    ))
                })?;
            pick.clone()
        } else {
            desc
        };
        self.copy_image_from(dir, &desc, tag, true)
    }

    /// Stores a layer blob read from a file as is (plain, gzip or zstd tar), after checking
    /// every entry is safe to unpack; answers its descriptor and diff_id.
    pub(crate) fn import_layer_file(&self, path: &Path) -> Result<LayerInfo> {
        let tmp = self.temp_path("import");
        let result = (|| {
            let (file, digest, size) = copy_hashed(path, &tmp)?;
            file.sync_all().map_err(io_err("syncing", &tmp))?;
            let stored = File::open(&tmp).map_err(io_err("opening", &tmp))?;
            let (reader, kind) = hash::decompress(stored).map_err(io_err("reading", path))?;
            let rest = crate::unpack::validate_archive(HashingReader::new(reader))
                .map_err(|e| with_source(e, path))?;
            let (diff_id, _) = rest
                .drain_and_finish()
                .map_err(io_err("decompressing", path))?;
            let media_type = match kind {
                hash::Detected::Plain => MediaType::ImageLayer,
                hash::Detected::Gzip => MediaType::ImageLayerGzip,
                hash::Detected::Zstd => MediaType::ImageLayerZstd,
            };
            let pin = self.place_pinned(&tmp, &digest)?;
            Ok(LayerInfo {
                descriptor: Descriptor::new(media_type, size, digest_of(&digest)?),
                diff_id,
                pin: Some(std::sync::Arc::new(pin)),
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn with_source(e: Error, path: &Path) -> Error {
    match e {
        Error::UnsafeEntry { entry, reason } => Error::UnsafeEntry {
            entry,
            reason: format!("{reason} (in {})", path.display()),
        },
        other => other,
    }
}

pub(crate) fn digest_of(digest: &str) -> Result<oci_spec::image::Digest> {
    digest
        .parse()
        .map_err(|e: oci_spec::OciSpecError| Error::Invalid(format!("digest `{digest}`: {e}")))
}

fn empty_index() -> Result<ImageIndex> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .map_err(json_err("index.json"))
}

fn read_index_at(dir: &Path) -> Result<ImageIndex> {
    let path = dir.join("index.json");
    let mut text = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut text))
        .map_err(io_err("reading", &path))?;
    ImageIndex::from_reader(text.as_slice()).map_err(json_err(format!("{}", path.display())))
}

/// Copies the file `src` to `tmp` (created), hashing as it goes; answers the written (not yet
/// synced) file, its `sha256:` digest and its size.
fn copy_hashed(src: &Path, tmp: &Path) -> Result<(File, String, u64)> {
    let mut input = File::open(src).map_err(io_err("opening", src))?;
    let out = File::create(tmp).map_err(io_err("creating", tmp))?;
    let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
    io::copy(&mut input, &mut w).map_err(io_err("copying", src))?;
    let (buf, digest, size) = w.finish();
    let file = buf
        .into_inner()
        .map_err(|e| io_err("writing", tmp)(e.into_error()))?;
    Ok((file, digest, size))
}

/// `config` as JSON with its execution configuration replaced by `execution` (plus `labels`):
/// typed OCI configurations have no room for Docker's `Healthcheck`, `OnBuild` and `Shell`,
/// which a Dockerfile build records as `docker build` does.
fn with_execution_config(
    config: &ImageConfiguration,
    execution: &serde_json::Value,
    labels: &BTreeMap<String, String>,
) -> Result<String> {
    let json_error = |e: serde_json::Error| Error::Json {
        what: "image config".to_string(),
        message: e.to_string(),
    };
    let mut whole = serde_json::to_value(config).map_err(json_error)?;
    let mut execution = execution.clone();
    if !labels.is_empty() {
        if let Some(object) = execution.as_object_mut() {
            let merged = object
                .entry("Labels")
                .or_insert_with(|| serde_json::json!({}));
            if !merged.is_object() {
                *merged = serde_json::json!({});
            }
            if let Some(merged) = merged.as_object_mut() {
                for (k, v) in labels {
                    merged.insert(k.clone(), serde_json::Value::String(v.clone()));
                }
            }
        }
    }
    if let Some(object) = whole.as_object_mut() {
        object.insert("config".to_string(), execution);
    }
    serde_json::to_string(&whole).map_err(json_error)
}
