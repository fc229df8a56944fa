//! `models fetch`: download a model over HTTP(S) into the models directory, atomically: the
//! bytes go to a temporary file beside the target (`.NAME.*.partial`), are hashed on the way,
//! and only a file whose sha256 matches the pin is renamed into place. On any error (network,
//! truncated transfer, checksum) the temporary is removed and nothing appears.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::ZooError;

/// Larger bodies are refused (a hostile server cannot fill the disk). Zoo models are 6.6 MB.
pub const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;

/// Checks and normalises a sha256 given on the command line.
pub fn parse_sha256(hex: &str) -> Result<String, ZooError> {
    let h = hex.trim().to_ascii_lowercase();
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h)
    } else {
        Err(ZooError::BadSha(hex.to_string()))
    }
}

/// Downloads `url` to `dest`, verifying `sha256` (lowercase hex). Shows a progress bar on
/// stderr when `progress` is set. Returns the number of bytes written.
pub fn download(url: &str, sha256: &str, dest: &Path, progress: bool) -> Result<u64, ZooError> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ZooError::Write { path: dir.to_path_buf(), source: e })?;
    let fail = |reason: String| ZooError::Download { url: url.to_string(), reason };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .max_redirects(5)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let (_, body) = response.into_parts();
    let total = body.content_length();
    if total.is_some_and(|t| t > MAX_DOWNLOAD_BYTES) {
        return Err(fail(format!(
            "the server announces {} bytes, more than the {MAX_DOWNLOAD_BYTES} limit",
            total.unwrap_or(0)
        )));
    }
    let mut reader = body.into_with_config().limit(MAX_DOWNLOAD_BYTES).reader();
    let stem = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{stem}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| ZooError::Write { path: dir.to_path_buf(), source: e })?;
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(stem.clone());
        bar
    });
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| fail(format!("transfer interrupted after {bytes} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(|e| ZooError::Write { path: tmp.path().to_path_buf(), source: e })?;
        bytes += n as u64;
        if let Some(b) = &bar {
            b.set_position(bytes);
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(t) = total.filter(|&t| t != bytes) {
        return Err(fail(format!("transfer interrupted: {bytes} of {t} bytes received")));
    }
    let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if got != sha256 {
        return Err(ZooError::Checksum { url: url.to_string(), expected: sha256.to_string(), got, bytes });
    }
    tmp.as_file().sync_all().map_err(|e| ZooError::Write { path: tmp.path().to_path_buf(), source: e })?;
    tmp.persist(dest).map_err(|e| ZooError::Write { path: dest.to_path_buf(), source: e.error })?;
    Ok(bytes)
}

/// Where `models fetch NAME` puts a model: `DIR/NAME.onnx`.
pub fn destination(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.onnx"))
}
