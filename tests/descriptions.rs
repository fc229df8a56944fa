//! Every network description shipped in pipelines/networks/ parses and validates, and the
//! built-in names load the same files.

use std::path::Path;

use stylestream::model::NetworkDescription;

#[test]
fn every_shipped_description_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/networks");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let d = NetworkDescription::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(NetworkDescription::load(&d.name).unwrap(), d, "built-in `{}` differs from its file", d.name);
            n += 1;
        }
    }
    assert!(n >= 2, "expected the TF and PyTorch descriptions, found {n}");
}
