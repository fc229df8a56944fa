//! Job manifests: a small JSON object written next to an output, after it, saying what made it.
//! A job is done iff its manifest exists, parses, matches the input version, the model and the
//! settings asked for, and the output it names exists with the recorded size. Version 1
//! manifests (no settings) are read and never match: their jobs run again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Meta, ObjectKey, Store, StoreError};

/// The manifest schema this build writes (it reads 1 and 2).
pub const MANIFEST_SCHEMA: u32 = 2;

/// Appended to the output key: `out/talk.mp4` → `out/talk.mp4.manifest.json`.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Manifests are small; anything larger is not one of ours.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// What produced an output: written as `<output_key>.manifest.json` once the output is
/// committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_SCHEMA`].
    pub schema: u32,
    pub input_key: String,
    /// The ETag of the input version that was styled.
    pub input_etag: String,
    pub input_size: u64,
    /// SHA-256 (hex) of the model weights file.
    pub model_sha256: String,
    /// Network description name (`transformnet-tf`, ...).
    pub network: String,
    pub frames: u64,
    pub output_key: String,
    pub output_size: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub stylestream_version: String,
    /// What was asked of the job beyond input and model (codec, crf, preset, later precision):
    /// a request with other settings is not done. Empty in version 1 manifests.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

impl Manifest {
    /// A manifest for `output` (its key and metadata after the upload) made from `input`,
    /// stamped now with this build's version. An input without an ETag gets an empty one,
    /// which never matches: such a job is never considered done.
    pub fn new(
        input_key: &ObjectKey,
        input: &Meta,
        model_sha256: &str,
        network: &str,
        frames: u64,
        output_key: &ObjectKey,
        output: &Meta,
    ) -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA,
            input_key: input_key.to_string(),
            input_etag: input.etag.clone().unwrap_or_default(),
            input_size: input.size,
            model_sha256: model_sha256.to_string(),
            network: network.to_string(),
            frames,
            output_key: output_key.to_string(),
            output_size: output.size,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            stylestream_version: env!("CARGO_PKG_VERSION").to_string(),
            settings: BTreeMap::new(),
        }
    }

    /// This manifest with the job's settings recorded.
    pub fn with_settings(mut self, settings: BTreeMap<String, String>) -> Manifest {
        self.settings = settings;
        self
    }

    /// Whether this manifest records a run on exactly this input version and model, with these
    /// settings (a version 1 manifest never matches: it did not record them).
    pub fn is_complete_for(&self, input_etag: &str, model_sha256: &str, settings: &BTreeMap<String, String>) -> bool {
        self.schema == MANIFEST_SCHEMA
            && !self.input_etag.is_empty()
            && self.input_etag == input_etag
            && self.model_sha256.eq_ignore_ascii_case(model_sha256)
            && &self.settings == settings
    }

    /// The key of the manifest of `output_key`.
    pub fn key_for(output_key: &ObjectKey) -> Result<ObjectKey, StoreError> {
        output_key.with_suffix(MANIFEST_SUFFIX)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a manifest, refusing other schema versions; `url` names it in errors.
    pub fn from_json(bytes: &[u8], url: &str) -> Result<Manifest, StoreError> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Manifest { url: url.to_string(), reason: e.to_string() })?;
        if !(1..=MANIFEST_SCHEMA).contains(&m.schema) {
            return Err(StoreError::Manifest {
                url: url.to_string(),
                reason: format!("schema {} (this build reads 1 to {MANIFEST_SCHEMA})", m.schema),
            });
        }
        Ok(m)
    }
}

impl Store {
    /// Writes `manifest` as `<output_key>.manifest.json`. Call it only after the output has
    /// been committed: the manifest is what marks the job done.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<ObjectKey, StoreError> {
        let key = Manifest::key_for(&ObjectKey::parse(&manifest.output_key)?)?;
        self.put_bytes_atomic(&key, manifest.to_json()).await?;
        Ok(key)
    }

    /// The manifest of `output_key`, `None` if there is none.
    pub async fn read_manifest(&self, output_key: &ObjectKey) -> Result<Option<Manifest>, StoreError> {
        let key = Manifest::key_for(output_key)?;
        match self.get_bytes(&key, MAX_MANIFEST_BYTES).await {
            Ok(bytes) => Manifest::from_json(&bytes, &self.url_of(&key)).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the job that makes `output_key` from this input version with this model and
    /// these settings is done: its manifest exists, parses and matches, and the output exists
    /// with the size the manifest recorded. A damaged manifest (or one of another schema) means
    /// not done, so the job runs again and replaces it; store errors are errors.
    pub async fn is_done(
        &self,
        output_key: &ObjectKey,
        input_etag: &str,
        model_sha256: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        match self.read_manifest(output_key).await {
            Ok(Some(m))
                if m.is_complete_for(input_etag, model_sha256, settings) && m.output_key == output_key.as_str() =>
            {
                match self.head(output_key).await? {
                    Some(out) if out.size == m.output_size => Ok(true),
                    other => {
                        let found = other.map_or("no object".to_string(), |o| format!("{} bytes", o.size));
                        tracing::warn!(output = %self.url_of(output_key), recorded = m.output_size, %found, "the manifest's output is missing or changed: making it again");
                        Ok(false)
                    }
                }
            }
            Ok(Some(_)) => Ok(false),
            Ok(None) => Ok(false),
            Err(StoreError::Manifest { url, reason }) => {
                tracing::warn!(url = %url, reason = %reason, "ignoring an unreadable manifest");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_rules() {
        let k = ObjectKey::parse("out/a.mp4").unwrap();
        let meta =
            |etag: Option<&str>| Meta { size: 10, etag: etag.map(str::to_string), last_modified: chrono::Utc::now() };
        let set = |crf: &str| {
            BTreeMap::from([("codec".to_string(), "libx264".to_string()), ("crf".to_string(), crf.to_string())])
        };
        let m = Manifest::new(
            &ObjectKey::parse("in/a.mp4").unwrap(),
            &meta(Some("\"e1\"")),
            "ABCD",
            "transformnet-tf",
            3,
            &k,
            &meta(None),
        )
        .with_settings(set("18"));
        assert!(m.is_complete_for("\"e1\"", "abcd", &set("18")));
        assert!(!m.is_complete_for("\"e2\"", "abcd", &set("18")));
        assert!(!m.is_complete_for("\"e1\"", "abce", &set("18")));
        assert!(!m.is_complete_for("\"e1\"", "abcd", &set("23")), "other settings are another job");
        let no_etag =
            Manifest::new(&ObjectKey::parse("in/a.mp4").unwrap(), &meta(None), "abcd", "n", 3, &k, &meta(None));
        assert!(!no_etag.is_complete_for("", "abcd", &BTreeMap::new()));
        let back = Manifest::from_json(&m.to_json(), "u").unwrap();
        assert_eq!(back, m);
        assert!(chrono::DateTime::parse_from_rfc3339(&back.created_at).is_ok());
        // Version 1 (no settings) is read, and never matches.
        let mut v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        v["schema"] = 1.into();
        v.as_object_mut().unwrap().remove("settings");
        let old = Manifest::from_json(v.to_string().as_bytes(), "u").unwrap();
        assert!(!old.is_complete_for("\"e1\"", "abcd", &set("18")));
        assert!(!old.is_complete_for("\"e1\"", "abcd", &BTreeMap::new()));
        v["schema"] = 3.into();
        let e = Manifest::from_json(v.to_string().as_bytes(), "az://c/out/a.mp4.manifest.json").unwrap_err();
        assert!(e.to_string().contains("az://c/out/a.mp4.manifest.json") && e.to_string().contains("schema 3"), "{e}");
    }
}
