//! The object store layer (src/storage) against real backends: a local directory, Azurite and
//! an S3-compatible server (moto), started through scripts/azurite.sh and scripts/s3.sh when
//! they are not running (one container or bucket per test, so tests run in parallel without
//! sharing objects).

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::azurite::{account_sas, azurite, create_container, unique_container, AZURITE_ACCOUNT, AZURITE_KEY};
use common::s3::{create_bucket, multipart_uploads, s3, s3_vars, unique_bucket};
use stylestream::storage::{BlockingStore, Manifest, ObjectKey, Store, StoreError, StoreOptions};

const MIB: usize = 1 << 20;

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("store-").tempdir().unwrap()
}

/// 1 MiB parts, so a few-MB file is a real multipart upload; few, quick retries.
fn options() -> StoreOptions {
    StoreOptions {
        part_size_bytes: MIB,
        max_parts_in_flight: 2,
        max_retries: 2,
        retry_timeout_secs: 30,
        ..Default::default()
    }
}

/// S3 refuses parts under 5 MiB (all but the last), and so does moto.
fn s3_options() -> StoreOptions {
    StoreOptions { part_size_bytes: 5 * MIB, ..options() }
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    common::xorshift(seed).take(n).map(|s| (s >> 32) as u8).collect()
}

fn emulator_vars() -> Vec<(String, String)> {
    vec![("AZURE_STORAGE_USE_EMULATOR".into(), "true".into())]
}

fn local_store(dir: &Path) -> Store {
    Store::open(&format!("file://{}", dir.display()), &options()).unwrap()
}

/// A store in a fresh Azurite container, rooted at `prefix`.
fn azurite_store(prefix: &str) -> (Store, String) {
    azurite();
    let container = unique_container();
    create_container(&container);
    let store = Store::open_with_vars(&format!("az://{container}/{prefix}"), &options(), emulator_vars()).unwrap();
    (store, container)
}

/// A store in a fresh bucket of the S3 test server, rooted at `prefix`.
fn s3_store_with(prefix: &str, opts: &StoreOptions) -> (Store, String) {
    s3();
    let bucket = unique_bucket();
    create_bucket(&bucket);
    let store = Store::open_with_vars(&format!("s3://{bucket}/{prefix}"), opts, s3_vars()).unwrap();
    (store, bucket)
}

fn s3_store(prefix: &str) -> (Store, String) {
    s3_store_with(prefix, &s3_options())
}

/// Names of the files under `dir`, recursively, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// The same checks on every backend.

async fn round_trip(store: &Store) {
    let work = tmp();
    let src = work.path().join("in.bin");
    let data = random_bytes(3 * MIB + 12345, 7);
    std::fs::write(&src, &data).unwrap();
    let k = key("videos/out/clip.mp4");
    assert_eq!(store.head(&k).await.unwrap(), None);

    let up = store.upload_atomic(&src, &k).await.unwrap();
    assert_eq!(up.size, data.len() as u64);
    let head = store.head(&k).await.unwrap().expect("uploaded object");
    assert_eq!(head.size, data.len() as u64);
    assert!(head.etag.is_some(), "no etag: {head:?}");
    assert_eq!(head.etag, up.etag);

    let dst = work.path().join("sub/dir/clip.mp4");
    let got = store.download(&k, &dst).await.unwrap();
    assert_eq!((got.size, &got.etag), (head.size, &head.etag));
    assert!(std::fs::read(&dst).unwrap() == data, "downloaded bytes differ");
    assert_eq!(files_under(&work.path().join("sub")), ["dir/clip.mp4"], "download left temporaries");

    assert_eq!(store.list("").await.unwrap(), std::slice::from_ref(&k));
    assert_eq!(store.list("videos").await.unwrap(), std::slice::from_ref(&k));
    assert_eq!(store.list("videos/out/").await.unwrap(), std::slice::from_ref(&k));
    assert!(store.list("video").await.unwrap().is_empty(), "prefixes end at a segment boundary");
    assert!(store.list_partials("").await.unwrap().is_empty());

    // Replacing the object gives a new ETag.
    let data2 = random_bytes(MIB / 2, 8);
    std::fs::write(&src, &data2).unwrap();
    let up2 = store.upload_atomic(&src, &k).await.unwrap();
    assert_eq!(up2.size, data2.len() as u64);
    assert_ne!(up2.etag, head.etag);
    store.download(&k, &dst).await.unwrap();
    assert!(std::fs::read(&dst).unwrap() == data2);

    // Missing objects: NotFound, permanent, naming the URL; the destination is left alone.
    let missing = key("videos/none.mp4");
    let e = store.download(&missing, &work.path().join("none.mp4")).await.unwrap_err();
    assert!(e.is_not_found() && !e.is_transient(), "{e:?}");
    assert!(e.to_string().contains(&store.url_of(&missing)), "{e}");
    assert!(!work.path().join("none.mp4").exists());

    // An unreadable source file: a local error naming it, nothing uploaded.
    let e = store.upload_atomic(&work.path().join("absent.bin"), &missing).await.unwrap_err();
    assert!(matches!(e, StoreError::Local { .. }) && !e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("absent.bin"), "{e}");
    assert_eq!(store.head(&missing).await.unwrap(), None);

    assert!(store.delete(&k).await.unwrap());
    assert_eq!(store.head(&k).await.unwrap(), None);
    assert!(store.list("").await.unwrap().is_empty());
}

/// `local_dir`: the directory of a local store, to look at the files themselves; `len`: the
/// upload's size, more than two of the store's parts.
async fn upload_is_invisible_until_commit(store: &Store, local_dir: Option<&Path>, len: usize) {
    let k = key("out/video.mp4");
    store.put_bytes_atomic(&k, b"old version".to_vec()).await.unwrap();
    let data = random_bytes(len, 9);

    let mut up = store.begin_upload(&k).await.unwrap();
    let temp = up.temp_key().as_str().to_string();
    assert!(temp.starts_with("out/.video.mp4.") && temp.ends_with(".partial"), "{temp}");
    for chunk in data.chunks(256 * 1024) {
        up.write(chunk).await.unwrap();
    }
    // Mid-upload (two parts sent or in flight): readers still see the old object, nothing else.
    assert_eq!(store.head(&k).await.unwrap().map(|m| m.size), Some(11));
    assert_eq!(store.get_bytes(&k, 100).await.unwrap(), b"old version");
    assert_eq!(store.list("out").await.unwrap(), std::slice::from_ref(&k));
    if let Some(dir) = local_dir {
        let files = files_under(dir);
        assert!(files.iter().any(|f| f.starts_with("out/.video.mp4.") && f.contains(".partial")), "{files:?}");
        assert!(files.iter().all(|f| f == "out/video.mp4" || f.contains(".partial")), "{files:?}");
    }
    let meta = up.commit().await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert!(store.get_bytes(&k, 20 * MIB as u64).await.unwrap() == data);
    assert_eq!(store.list("out").await.unwrap(), std::slice::from_ref(&k));
    assert!(store.list_partials("").await.unwrap().is_empty());
    if let Some(dir) = local_dir {
        assert_eq!(files_under(dir), ["out/video.mp4"]);
    }

    // A failure midway (the upload dropped): nothing under the final name; the temporary is
    // gone (local: its staging file removed) or was never visible (Azure: uncommitted blocks).
    let k2 = key("out/second.mp4");
    let mut up2 = store.begin_upload(&k2).await.unwrap();
    for chunk in data.chunks(256 * 1024) {
        up2.write(chunk).await.unwrap();
    }
    drop(up2);
    assert_eq!(store.head(&k2).await.unwrap(), None);
    assert_eq!(store.list("out").await.unwrap(), std::slice::from_ref(&k));
    assert!(store.list_partials("out").await.unwrap().is_empty());
    if let Some(dir) = local_dir {
        let deadline = Instant::now() + Duration::from_secs(10);
        while files_under(dir) != ["out/video.mp4"] && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(files_under(dir), ["out/video.mp4"], "the dropped upload left files");
    }

    // An explicit abort likewise.
    let mut up3 = store.begin_upload(&k2).await.unwrap();
    up3.write(&data[..MIB + 1]).await.unwrap();
    up3.abort().await;
    assert_eq!(store.head(&k2).await.unwrap(), None);
    assert_eq!(store.list("out").await.unwrap(), [k]);
}

async fn hostile_keys_are_refused(store: &Store) {
    let hostile = [
        "../escape",
        "a/../../escape",
        "..",
        "%2e%2e/escape",
        "%2E%2E%2Fescape",
        "a/%2e%2e/%2e%2e/escape",
        "..%2fescape",
        "/etc/passwd",
        "a\\..\\..\\escape",
        "./x",
        "a//b",
        "a/",
        "",
        "x\u{0}y",
        "x\ny",
        "out/.video.mp4.0123.partial",
    ];
    for bad in hostile {
        let e = ObjectKey::parse(bad).unwrap_err();
        assert!(matches!(e, StoreError::InvalidKey { .. }) && !e.is_transient(), "{bad:?}: {e:?}");
        assert!(e.to_string().contains(&format!("{bad:?}")), "the error should name {bad:?}: {e}");
    }
    let long = "k".repeat(1025);
    assert!(ObjectKey::parse(&long).unwrap_err().to_string().contains("1025 bytes"));
    for bad_prefix in ["..", "../x", "%2e%2e"] {
        assert!(store.list(bad_prefix).await.is_err(), "list({bad_prefix:?}) accepted");
    }
}

async fn manifest_round_trip(store: &Store) {
    let input = key("in/talk.mp4");
    let output = key("out/talk.mp4");
    store.put_bytes_atomic(&input, random_bytes(5000, 1)).await.unwrap();
    store.put_bytes_atomic(&output, random_bytes(3000, 2)).await.unwrap();
    let in_meta = store.head(&input).await.unwrap().unwrap();
    let out_meta = store.head(&output).await.unwrap().unwrap();
    let etag = in_meta.etag.clone().unwrap();
    let model = "ab".repeat(32);
    let settings = |crf: &str| {
        std::collections::BTreeMap::from([
            ("codec".to_string(), "libx264".to_string()),
            ("crf".to_string(), crf.to_string()),
            ("preset".to_string(), "medium".to_string()),
        ])
    };
    let s18 = settings("18");
    assert!(!store.is_done(&output, &etag, &model, &s18).await.unwrap(), "done without a manifest");
    assert_eq!(store.read_manifest(&output).await.unwrap(), None);

    let m =
        Manifest::new(&input, &in_meta, &model, "transformnet-tf", 60, &output, &out_meta).with_settings(s18.clone());
    let mkey = store.write_manifest(&m).await.unwrap();
    assert_eq!(mkey.as_str(), "out/talk.mp4.manifest.json");
    assert_eq!(store.read_manifest(&output).await.unwrap(), Some(m.clone()));
    let json: serde_json::Value = serde_json::from_slice(&store.get_bytes(&mkey, 1 << 20).await.unwrap()).unwrap();
    assert_eq!(json["schema"], 2);
    assert_eq!(json["input_key"], "in/talk.mp4");
    assert_eq!(json["input_size"], 5000);
    assert_eq!(json["output_size"], 3000);
    assert_eq!(json["frames"], 60);
    assert_eq!(json["settings"]["crf"], "18");
    assert!(chrono::DateTime::parse_from_rfc3339(json["created_at"].as_str().unwrap()).is_ok(), "{json}");
    assert_eq!(store.list("out").await.unwrap(), [output.clone(), mkey.clone()]);

    assert!(store.is_done(&output, &etag, &model, &s18).await.unwrap());
    assert!(!store.is_done(&output, &etag, &"cd".repeat(32), &s18).await.unwrap(), "other model");
    assert!(!store.is_done(&output, &etag, &model, &settings("23")).await.unwrap(), "other settings");
    // The output gone, or replaced by another size: not done, whatever the manifest says.
    store.delete(&output).await.unwrap();
    assert!(!store.is_done(&output, &etag, &model, &s18).await.unwrap(), "done without its output");
    store.put_bytes_atomic(&output, random_bytes(2999, 2)).await.unwrap();
    assert!(!store.is_done(&output, &etag, &model, &s18).await.unwrap(), "done with an output of another size");
    store.put_bytes_atomic(&output, random_bytes(3000, 2)).await.unwrap();
    assert!(store.is_done(&output, &etag, &model, &s18).await.unwrap());
    // A version 1 manifest (no settings) is read and never matches.
    let mut v1 = json.clone();
    v1["schema"] = 1.into();
    v1.as_object_mut().unwrap().remove("settings");
    store.put_bytes_atomic(&mkey, v1.to_string().into_bytes()).await.unwrap();
    assert_eq!(store.read_manifest(&output).await.unwrap().unwrap().schema, 1);
    assert!(!store.is_done(&output, &etag, &model, &s18).await.unwrap(), "a version 1 manifest matched");
    store.write_manifest(&m).await.unwrap();
    // A new version of the input (new ETag) is not done.
    store.put_bytes_atomic(&input, random_bytes(5000, 3)).await.unwrap();
    let new_etag = store.head(&input).await.unwrap().unwrap().etag.unwrap();
    assert_ne!(new_etag, etag);
    assert!(!store.is_done(&output, &new_etag, &model, &s18).await.unwrap());

    // A damaged manifest: not done (the job reruns), and reading it names it.
    store.put_bytes_atomic(&mkey, b"{\"schema\": 1, \"input_key".to_vec()).await.unwrap();
    assert!(!store.is_done(&output, &etag, &model, &s18).await.unwrap());
    let e = store.read_manifest(&output).await.unwrap_err();
    assert!(e.to_string().contains(&store.url_of(&mkey)), "{e}");
}

async fn get_bytes_limit(store: &Store) {
    let k = key("logs/job.json");
    store.put_bytes_atomic(&k, vec![b'x'; 100]).await.unwrap();
    assert_eq!(store.get_bytes(&k, 100).await.unwrap().len(), 100);
    let e = store.get_bytes(&k, 99).await.unwrap_err();
    assert!(matches!(e, StoreError::TooLarge { size: 100, max: 99, .. }) && !e.is_transient(), "{e:?}");
    assert!(e.to_string().contains(&store.url_of(&k)), "{e}");
    let e = store.get_bytes(&key("logs/none.json"), 100).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Local directory.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_round_trip() {
    let dir = tmp();
    round_trip(&local_store(&dir.path().join("root"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_upload_is_invisible_until_commit() {
    let dir = tmp();
    let root = dir.path().join("root");
    upload_is_invisible_until_commit(&local_store(&root), Some(&root), 5 * MIB / 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_keys_cannot_escape_the_root() {
    let dir = tmp();
    let root = dir.path().join("jail");
    let store = local_store(&root);
    hostile_keys_are_refused(&store).await;
    store.put_bytes_atomic(&key("inside/x"), b"x".to_vec()).await.unwrap();
    assert_eq!(files_under(dir.path()), ["jail/inside/x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_manifest_round_trip() {
    let dir = tmp();
    manifest_round_trip(&local_store(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_get_bytes_limit() {
    let dir = tmp();
    get_bytes_limit(&local_store(dir.path())).await;
}

#[test]
fn local_urls_and_plain_paths() {
    let dir = tmp();
    // A plain path and a file:// URL name the same directory, created when missing.
    let plain = dir.path().join("a/b");
    let s1 = BlockingStore::open(plain.to_str().unwrap(), &options()).unwrap();
    assert!(plain.is_dir());
    s1.put_bytes_atomic(&key("k.json"), b"{}".to_vec()).unwrap();
    let s2 = BlockingStore::open(&format!("file://{}", plain.display()), &options()).unwrap();
    assert_eq!(s2.get_bytes(&key("k.json"), 10).unwrap(), b"{}");
    assert_eq!(s2.list("").unwrap(), [key("k.json")]);
    assert!(s2.delete(&key("k.json")).unwrap());
    assert!(!s2.delete(&key("k.json")).unwrap());
    // The blocking facade's transfers.
    let src = dir.path().join("src.bin");
    let data = random_bytes(MIB + 3, 4);
    std::fs::write(&src, &data).unwrap();
    s1.upload_atomic(&src, &key("d/v.bin")).unwrap();
    s2.download(&key("d/v.bin"), &dir.path().join("back.bin")).unwrap();
    assert!(std::fs::read(dir.path().join("back.bin")).unwrap() == data);
    let e = Store::open("file://relative/dir", &options()).unwrap_err();
    assert!(e.to_string().contains("file://relative/dir"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Azure Blob, through Azurite.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_round_trip() {
    let (store, _) = azurite_store("jobs/2024");
    round_trip(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_upload_is_invisible_until_commit() {
    let (store, _) = azurite_store("");
    upload_is_invisible_until_commit(&store, None, 5 * MIB / 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_keys_cannot_escape_the_prefix() {
    let (store, container) = azurite_store("jail");
    hostile_keys_are_refused(&store).await;
    store.put_bytes_atomic(&key("inside/x"), b"x".to_vec()).await.unwrap();
    // Seen from the container's root, the only object is under the prefix.
    let root = Store::open_with_vars(&format!("azure://{container}"), &options(), emulator_vars()).unwrap();
    assert_eq!(root.list("").await.unwrap(), [key("jail/inside/x")]);
    assert_eq!(store.url_of(&key("inside/x")), format!("az://{container}/jail/inside/x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_manifest_round_trip() {
    let (store, _) = azurite_store("m");
    manifest_round_trip(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_get_bytes_limit() {
    let (store, _) = azurite_store("");
    get_bytes_limit(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_credentials_from_a_file() {
    azurite();
    let container = unique_container();
    create_container(&container);
    let dir = tmp();
    let creds = dir.path().join("azure.env");
    std::fs::write(
        &creds,
        format!("# Azurite\nAZURE_STORAGE_USE_EMULATOR=true\nAZURE_STORAGE_ACCOUNT_KEY={AZURITE_KEY}\n"),
    )
    .unwrap();
    let opts = StoreOptions { credentials_file: Some(creds), ..options() };
    let store = Store::open_with_vars(&format!("az://{container}"), &opts, Vec::new()).unwrap();
    store.put_bytes_atomic(&key("a"), b"1".to_vec()).await.unwrap();
    assert_eq!(store.get_bytes(&key("a"), 1).await.unwrap(), b"1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_errors_are_classified() {
    azurite();
    // No such container: the upload fails permanently, naming the object.
    let missing = Store::open_with_vars(&format!("az://{}", unique_container()), &options(), emulator_vars()).unwrap();
    let dir = tmp();
    let src = dir.path().join("f");
    std::fs::write(&src, b"data").unwrap();
    let e = missing.upload_atomic(&src, &key("o/f")).await.unwrap_err();
    assert!(!e.is_transient() && !e.is_auth_failure(), "{e:?}");
    assert!(e.to_string().contains(missing.url()), "{e}");

    // A wrong account key: denied, permanent, an auth failure.
    let (_, container) = azurite_store("");
    let wrong_key = base64_of(&[7u8; 64]);
    let mut vars = emulator_vars();
    vars.push(("AZURE_STORAGE_ACCOUNT_KEY".into(), wrong_key));
    let denied = Store::open_with_vars(&format!("az://{container}"), &options(), vars).unwrap();
    let e = denied.put_bytes_atomic(&key("x"), b"x".to_vec()).await.unwrap_err();
    assert!(matches!(e, StoreError::Denied { .. }) && e.is_auth_failure() && !e.is_transient(), "{e:?}");

    // Nothing listening: transient once the (short) retries are spent.
    let quick =
        StoreOptions { max_retries: 1, retry_timeout_secs: 5, initial_backoff_ms: 10, max_backoff_ms: 50, ..options() };
    let vars = [
        ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
        ("AZURE_STORAGE_ENDPOINT", "http://127.0.0.1:9/devstoreaccount1"),
        ("AZURE_ALLOW_HTTP", "true"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let down = Store::open_with_vars("az://c", &quick, vars).unwrap();
    let e = down.head(&key("k")).await.unwrap_err();
    assert!(e.is_transient() && !e.is_auth_failure(), "{e:?}");
    assert!(e.to_string().contains("az://c/k"), "{e}");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Azure Blob with SAS tokens (Azurite), and credentials re-read after they were renewed.

fn sas_vars(token: &str) -> Vec<(String, String)> {
    vec![("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()), ("AZURE_STORAGE_SAS_TOKEN".into(), token.into())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_sas_token_puts_gets_lists_and_commits_uploads() {
    azurite();
    let container = unique_container();
    create_container(&container);
    let token = account_sas(chrono::Utc::now() + chrono::Duration::hours(1));
    let store = Store::open_with_vars(&format!("az://{container}/sas"), &options(), sas_vars(&token)).unwrap();
    store.put_bytes_atomic(&key("a/small.json"), b"{}".to_vec()).await.unwrap();
    assert_eq!(store.get_bytes(&key("a/small.json"), 10).await.unwrap(), b"{}");
    // A multipart upload committed by copy + delete, all under the SAS token.
    let work = tmp();
    let src = work.path().join("v.bin");
    let data = random_bytes(2 * MIB + 7, 11);
    std::fs::write(&src, &data).unwrap();
    store.upload_atomic(&src, &key("a/v.bin")).await.unwrap();
    store.download(&key("a/v.bin"), &work.path().join("back.bin")).await.unwrap();
    assert!(std::fs::read(work.path().join("back.bin")).unwrap() == data);
    assert_eq!(store.list("a").await.unwrap(), [key("a/small.json"), key("a/v.bin")]);
    assert_eq!(store.head(&key("a/v.bin")).await.unwrap().map(|m| m.size), Some(data.len() as u64));
    // The same objects, seen with the account key: the SAS store wrote where it should.
    // (No delete here: object_store deletes through Blob Batch, which Azurite 3.37 answers
    // with 500 under a SAS token; see README, Storage.)
    let keyed = Store::open_with_vars(&format!("az://{container}"), &options(), emulator_vars()).unwrap();
    assert_eq!(keyed.list("").await.unwrap(), [key("sas/a/small.json"), key("sas/a/v.bin")]);
}

/// What the service does on an auth failure: the credentials file is renewed (a new SAS token),
/// the store re-opened, the same read retried.
#[test]
fn azurite_expired_sas_is_an_auth_failure_until_the_store_is_reopened() {
    azurite();
    let container = unique_container();
    create_container(&container);
    let keyed =
        BlockingStore::new(Store::open_with_vars(&format!("az://{container}"), &options(), emulator_vars()).unwrap())
            .unwrap();
    keyed.put_bytes_atomic(&key("in/clip.mp4"), b"frames".to_vec()).unwrap();

    let dir = tmp();
    let creds = dir.path().join("storage.env");
    let expired = account_sas(chrono::Utc::now() - chrono::Duration::hours(1));
    std::fs::write(&creds, format!("AZURE_STORAGE_USE_EMULATOR=true\nAZURE_STORAGE_SAS_TOKEN={expired}\n")).unwrap();
    let opts = StoreOptions { credentials_file: Some(creds.clone()), ..options() };
    let store = BlockingStore::open(&format!("az://{container}"), &opts).unwrap();
    let e = store.get_bytes(&key("in/clip.mp4"), 100).unwrap_err();
    assert!(e.is_auth_failure(), "{e:?}");
    assert!(!e.is_transient() && !e.is_not_found(), "{e:?}");
    assert!(e.to_string().contains(&format!("az://{container}/in/clip.mp4")), "{e}");
    let e = store.head(&key("in/clip.mp4")).unwrap_err();
    assert!(e.is_auth_failure() && !e.is_transient(), "{e:?}");

    // Renewed on disk: the open store still holds the old token...
    let valid = account_sas(chrono::Utc::now() + chrono::Duration::hours(1));
    std::fs::write(&creds, format!("AZURE_STORAGE_USE_EMULATOR=true\nAZURE_STORAGE_SAS_TOKEN={valid}\n")).unwrap();
    assert!(store.get_bytes(&key("in/clip.mp4"), 100).unwrap_err().is_auth_failure());
    // ... until it is re-opened.
    store.reopen().unwrap();
    assert_eq!(store.get_bytes(&key("in/clip.mp4"), 100).unwrap(), b"frames");

    // A credentials file that went missing: reopen fails, as an auth failure, and the store in
    // use is kept.
    std::fs::remove_file(&creds).unwrap();
    let e = store.reopen().unwrap_err();
    assert!(e.is_auth_failure() && !e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("storage.env"), "{e}");
    assert_eq!(store.get_bytes(&key("in/clip.mp4"), 100).unwrap(), b"frames");
}

// ---------------------------------------------------------------------------------------------
// S3, through moto's server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip() {
    let (store, _) = s3_store("jobs/2024");
    round_trip(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_upload_is_invisible_until_commit() {
    let (store, bucket) = s3_store("");
    upload_is_invisible_until_commit(&store, None, 11 * MIB).await;
    // The dropped and the aborted upload left no multipart upload behind.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !multipart_uploads(&bucket).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(multipart_uploads(&bucket), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keys_cannot_escape_the_prefix() {
    let (store, bucket) = s3_store("jail");
    hostile_keys_are_refused(&store).await;
    store.put_bytes_atomic(&key("inside/x"), b"x".to_vec()).await.unwrap();
    let root = Store::open_with_vars(&format!("s3://{bucket}"), &s3_options(), s3_vars()).unwrap();
    assert_eq!(root.list("").await.unwrap(), [key("jail/inside/x")]);
    assert_eq!(store.url_of(&key("inside/x")), format!("s3://{bucket}/jail/inside/x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_manifest_round_trip() {
    let (store, _) = s3_store("m");
    manifest_round_trip(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_get_bytes_limit() {
    let (store, _) = s3_store("");
    get_bytes_limit(&store).await;
}

/// An upload over `multipart_copy_threshold_bytes` is committed by a multipart copy
/// (UploadPartCopy in byte ranges): byte-identical, never visible in part, nothing left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_large_upload_commits_by_multipart_copy() {
    let opts = StoreOptions {
        // The upload itself in one 8 MiB part, the copy in 5 MiB parts: the final object's
        // ETag ("<md5>-<parts>") tells which of the two wrote it.
        part_size_bytes: 8 * MIB,
        multipart_copy_threshold_bytes: 5 * MIB as u64,
        multipart_copy_part_size_bytes: 5 * MIB as u64,
        ..s3_options()
    };
    let (store, bucket) = s3_store_with("big", &opts);
    let k = key("out/long.mp4");
    store.put_bytes_atomic(&k, b"old version".to_vec()).await.unwrap();
    let data = random_bytes(6 * MIB + 4321, 12);
    let mut up = store.begin_upload(&k).await.unwrap();
    for chunk in data.chunks(MIB) {
        up.write(chunk).await.unwrap();
    }
    assert_eq!(store.get_bytes(&k, 100).await.unwrap(), b"old version");

    // Readers polling while the upload completes and is copied see the old object or the
    // whole new one, nothing else.
    let watcher = {
        let (store, k) = (store.clone(), k.clone());
        tokio::spawn(async move {
            let mut sizes = std::collections::BTreeSet::new();
            loop {
                let size = store.head(&k).await.unwrap().map(|m| m.size);
                sizes.insert(size);
                if size != Some(11) {
                    return sizes;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let meta = up.commit().await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), watcher).await.unwrap().unwrap();
    assert_eq!(seen, [Some(11), Some(data.len() as u64)].into_iter().collect(), "sizes seen under the final key");

    assert_eq!(meta.size, data.len() as u64);
    let etag = meta.etag.clone().unwrap();
    assert!(etag.trim_matches('"').ends_with("-2"), "not a two-part multipart copy: ETag {etag}");
    let work = tmp();
    store.download(&k, &work.path().join("long.mp4")).await.unwrap();
    assert!(std::fs::read(work.path().join("long.mp4")).unwrap() == data, "the copied object differs");
    assert_eq!(store.list("").await.unwrap(), std::slice::from_ref(&k));
    assert!(store.list_partials("").await.unwrap().is_empty(), "the temporary was not removed");
    assert_eq!(multipart_uploads(&bucket), [], "a multipart upload was left open");

    // At the threshold or below: one CopyObject, as before (not a 5 MiB-part copy).
    let small = random_bytes(5 * MIB, 13);
    let src = work.path().join("small.bin");
    std::fs::write(&src, &small).unwrap();
    let meta = store.upload_atomic(&src, &k).await.unwrap();
    assert!(!meta.etag.unwrap().trim_matches('"').ends_with("-2"));
    assert!(store.get_bytes(&k, 10 * MIB as u64).await.unwrap() == small);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_are_classified() {
    s3();
    // No such bucket: the upload fails permanently, naming the object.
    let missing = Store::open_with_vars(&format!("s3://{}", unique_bucket()), &s3_options(), s3_vars()).unwrap();
    let dir = tmp();
    let src = dir.path().join("f");
    std::fs::write(&src, b"data").unwrap();
    let e = missing.upload_atomic(&src, &key("o/f")).await.unwrap_err();
    assert!(!e.is_transient() && !e.is_auth_failure(), "{e:?}");
    assert!(e.to_string().contains(missing.url()), "{e}");

    // Nothing listening: transient once the (short) retries are spent.
    let quick = StoreOptions {
        max_retries: 1,
        retry_timeout_secs: 5,
        initial_backoff_ms: 10,
        max_backoff_ms: 50,
        ..s3_options()
    };
    let mut vars = s3_vars();
    vars.retain(|(k, _)| k != "AWS_ENDPOINT");
    vars.push(("AWS_ENDPOINT".into(), "http://127.0.0.1:9".into()));
    let down = Store::open_with_vars("s3://b", &quick, vars).unwrap();
    let e = down.head(&key("k")).await.unwrap_err();
    assert!(e.is_transient() && !e.is_auth_failure(), "{e:?}");
    assert!(e.to_string().contains("s3://b/k"), "{e}");
}
