//! Who owns what a service instance leaves in the stores: each instance has an id, writes a
//! heartbeat object `instances/<id>.json` to the system store every `heartbeat_secs`, and names
//! its upload temporaries `.<name>.<random>~<id>.partial`. A temporary is removed only when its
//! owner's heartbeat is missing or older than three intervals (the owner is dead), so two
//! instances on one queue never delete each other's uploads in flight.

use std::time::Duration;

use super::{BlockingStore, ObjectKey, Store};

/// A fresh instance id: `<host>-<pid>-<random>`, in `A-Z a-z 0-9 -` (it goes into object names).
pub fn new_instance_id(configured: Option<&str>) -> String {
    let raw = match configured {
        Some(id) => id.to_string(),
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}-{:08x}", host.trim(), std::process::id(), fastrand::u32(..))
        }
    };
    let id: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).take(64).collect();
    if id.is_empty() {
        format!("instance-{:08x}", fastrand::u32(..))
    } else {
        id
    }
}

/// The heartbeat object of instance `id`.
pub fn heartbeat_key(id: &str) -> Option<ObjectKey> {
    ObjectKey::parse(&format!("instances/{id}.json")).ok()
}

/// What an instance adds to its heartbeat (the work in progress it tells others about).
pub type HeartbeatExtra = std::sync::Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Writes the heartbeat now and then every `interval`, forever (run it as a task); `extra`
/// goes in as its `parts`.
pub async fn heartbeat(system: Store, id: String, interval: Duration, extra: HeartbeatExtra) {
    let Some(key) = heartbeat_key(&id) else { return };
    loop {
        let body = serde_json::json!({ "instance": id, "pid": std::process::id(), "at": chrono::Utc::now().to_rfc3339(), "parts": extra() });
        if let Err(e) = system.put_bytes_atomic(&key, body.to_string().into_bytes()).await {
            tracing::warn!(error = %e, "could not write the instance heartbeat");
        }
        tokio::time::sleep(interval).await;
    }
}

/// The owner id in an upload temporary's name (`.<name>.<random>~<id>.partial`); `None` for
/// temporaries written without one.
pub fn partial_owner(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".partial")?;
    let last = stem.rsplit('.').next()?;
    last.split_once('~').map(|(_, id)| id).filter(|id| !id.is_empty())
}

/// Whether instance `id` has written its heartbeat within three intervals.
pub fn is_alive(system: &BlockingStore, id: &str, interval: Duration) -> bool {
    let Some(key) = heartbeat_key(id) else { return false };
    match system.head(&key) {
        Ok(Some(meta)) => {
            let age = chrono::Utc::now().signed_duration_since(meta.last_modified);
            age.to_std().map_or(true, |age| age < interval * 3)
        }
        Ok(None) => false,
        // Unknown: keep the temporary (removing a live upload is worse than a late clean-up).
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_temporary_names() {
        assert_eq!(partial_owner(".a.mp4.0123456789abcdef~host-12-ab.partial"), Some("host-12-ab"));
        assert_eq!(partial_owner(".a.mp4.0123456789abcdef.partial"), None);
        assert_eq!(partial_owner("a.mp4"), None);
        let id = new_instance_id(Some("pod/7 ä"));
        assert_eq!(id, "pod-7--");
        assert!(new_instance_id(None).chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
