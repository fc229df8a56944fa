//! Azurite for tests: started through scripts/azurite.sh when not running, one fresh
//! container per test (created with a SharedKey-signed REST call, which object_store cannot
//! make).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public, documented by Microsoft).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const AZURITE_ADDR: &str = "127.0.0.1:10000";

/// Starts Azurite with the project's script (idempotent, safe from parallel test binaries).
pub fn azurite() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/azurite.sh");
        let out = std::process::Command::new("bash").arg(&script).arg("start").output().unwrap();
        assert!(
            out.status.success(),
            "scripts/azurite.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A container name no other test (or earlier run) uses.
pub fn unique_container() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{:x}-{}-{}", nanos & 0xffff_ffff_ffff, std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Creates a container on Azurite: object_store cannot, so one SharedKey-signed REST call.
pub fn create_container(name: &str) {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let version = "2021-08-06";
    // VERB, 11 empty standard headers, canonical x-ms-* headers, canonical resource (the
    // emulator's path carries the account, so it appears twice).
    let to_sign = format!(
        "PUT\n{}x-ms-date:{date}\nx-ms-version:{version}\n/{a}/{a}/{name}\nrestype:container",
        "\n".repeat(11),
        a = AZURITE_ACCOUNT
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&b64.decode(AZURITE_KEY).unwrap()).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    let request = format!(
        "PUT /{AZURITE_ACCOUNT}/{name}?restype=container HTTP/1.1\r\nHost: {AZURITE_ADDR}\r\nx-ms-date: {date}\r\n\
         x-ms-version: {version}\r\nAuthorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    let mut conn = TcpStream::connect(AZURITE_ADDR).unwrap();
    conn.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "creating container {name} failed:\n{response}");
}

/// An account SAS token for Azurite's account (blob service; containers and objects; read,
/// write, delete, list, add, create) that expires at `expiry`, signed with the well-known key
/// (signed-version 2020-08-04: the string to sign has no encryption scope line).
pub fn account_sas(expiry: chrono::DateTime<chrono::Utc>) -> String {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (version, permissions, services, resource_types) = ("2020-08-04", "rwdlac", "b", "sco");
    let se = expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    // account, permissions, services, resource types, start, expiry, IP, protocol, version, "".
    let to_sign = format!("{AZURITE_ACCOUNT}\n{permissions}\n{services}\n{resource_types}\n\n{se}\n\n\n{version}\n");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&b64.decode(AZURITE_KEY).unwrap()).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    let enc =
        |s: &str| s.replace('%', "%25").replace('+', "%2B").replace('/', "%2F").replace('=', "%3D").replace(':', "%3A");
    format!("sv={version}&ss={services}&srt={resource_types}&sp={permissions}&se={}&sig={}", enc(&se), enc(&sig))
}
