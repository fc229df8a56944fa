//! The user's manual against the code: what the README names exists, and what the code can
//! answer is named in the README.

use stylestream::job::PoisonCode;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The paragraph of the README that starts with `heading`.
fn paragraph(text: &str, heading: &str) -> String {
    let start = text.find(heading).unwrap_or_else(|| panic!("the README has no `{heading}`"));
    text[start..].split("\n\n").next().unwrap_or_default().to_string()
}

#[test]
fn every_dead_letter_reason_is_in_the_readme_and_nothing_else() {
    let list = paragraph(&readme(), "**Dead-letter reasons**");
    for code in PoisonCode::ALL {
        assert!(
            list.contains(&format!("`{}`", code.as_str())),
            "the README's dead-letter list lacks `{code}`:\n{list}"
        );
    }
    // Every kebab-case word the list names in backquotes (a reason; headers start with `x-`) is
    // one of ours.
    let named: Vec<&str> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.contains('-') && !w.starts_with("x-") && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    assert!(named.len() >= PoisonCode::ALL.len(), "{named:?}");
    for word in named {
        assert!(
            PoisonCode::ALL.iter().any(|c| c.as_str() == word),
            "the README names `{word}`, which the service never sends"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Flags and configuration keys: what the manuals show exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::CommandFactory;
use stylestream::config::service::ServiceConfig;
use stylestream::config::RunConfig;

/// README.md and every docs/*.md, as (name, text).
fn manuals() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "docs/ has no .md file");
    paths.insert(0, root.join("README.md"));
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.strip_prefix(root).unwrap().display().to_string(), text)
        })
        .collect()
}

/// A manual split into its fenced code blocks (language, text) and its prose (everything else).
struct Parts {
    blocks: Vec<(String, String)>,
    prose: String,
}

/// A fenced code block: its language and its text.
type Block = (String, String);

fn parts(text: &str) -> Parts {
    let (mut blocks, mut prose, mut open): (Vec<Block>, String, Option<Block>) = (vec![], String::new(), None);
    for line in text.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(lang)) => open = Some((lang.trim().to_string(), String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    Parts { blocks, prose }
}

/// The inline code spans of some prose (a span may wrap a line), whitespace collapsed.
fn inline_spans(prose: &str) -> Vec<String> {
    let pieces: Vec<&str> = prose.split('`').collect();
    assert!(pieces.len() % 2 == 1, "an odd number of backquotes in the prose");
    pieces.iter().skip(1).step_by(2).map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

/// Every `--flag` in `text`: `--` not preceded by a letter, digit or `-`, then a lowercase word.
fn flags_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices("--") {
        let before_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'-');
        let name: String =
            text[i + 2..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-').collect();
        let name = name.trim_end_matches('-');
        if before_ok && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            found.push(format!("--{name}"));
        }
    }
    found
}

/// Flags of other programs that the manuals show. Each is excused only where the same line (or
/// inline code span) names its program, so `stylestream stylize --test` would still fail.
const OTHER_PROGRAMS: &[(&str, &[&str])] = &[
    ("cargo", &["--test", "--release", "--benches", "--doc", "--lib", "--bins", "--tests", "--no-run"]),
    ("aws", &["--bucket", "--lifecycle-configuration"]),
    ("bench_onnxruntime.py", &["--stylestream", "--stylestream-image-check", "--size", "--frames"]),
];

fn other_program(flag: &str, context: &str) -> bool {
    OTHER_PROGRAMS.iter().any(|(program, flags)| flags.contains(&flag) && context.contains(program))
}

/// The long options of every command as its `--help` prints them, keyed by command path
/// ("" for the top level, "stylize", "models fetch", ...). Hidden options are not printed, so
/// they are not here.
fn help_flags() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(cmd: &mut clap::Command, path: &str, out: &mut BTreeMap<String, BTreeSet<String>>) {
        let mut flags = BTreeSet::new();
        for line in cmd.render_long_help().to_string().lines() {
            // An option line: two spaces, then `-x, ` or four spaces, then `--name`; descriptions
            // and possible values are indented further.
            let Some(rest) = line.strip_prefix("  ") else { continue };
            let rest = match rest.get(..4) {
                Some("    ") => &rest[4..],
                Some(s) if s.starts_with('-') && s.ends_with(", ") => &rest[4..],
                _ => continue,
            };
            if let Some(name) = rest.strip_prefix("--") {
                let name: String = name.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                flags.insert(format!("--{name}"));
            }
        }
        out.insert(path.to_string(), flags);
        for sub in cmd.get_subcommands_mut() {
            let sub_path =
                if path.is_empty() { sub.get_name().to_string() } else { format!("{path} {}", sub.get_name()) };
            walk(sub, &sub_path, out);
        }
    }
    let mut cmd = stylestream::cli::Cli::command();
    cmd.build();
    let mut out = BTreeMap::new();
    walk(&mut cmd, "", &mut out);
    out
}

/// The command a piece of text runs, when it runs `stylestream` (`stylestream models fetch ...`
/// → "models fetch"), and the text after the command's name.
fn stylestream_command<'a>(unit: &'a str, commands: &BTreeMap<String, BTreeSet<String>>) -> Option<(String, &'a str)> {
    let mut rest = unit;
    while let Some(i) = rest.find("stylestream") {
        let before = rest[..i].chars().last();
        let after = &rest[i + "stylestream".len()..];
        rest = after;
        if before.is_some_and(|c| !(c.is_whitespace() || c == '/')) || !(after.is_empty() || after.starts_with(' ')) {
            continue; // part of another word: stylestream_jobs_total, --stylestream, stylestream.jobs
        }
        let (mut path, mut tail) = (String::new(), after);
        for word in after.split_whitespace() {
            let longer = if path.is_empty() { word.to_string() } else { format!("{path} {word}") };
            if !commands.contains_key(&longer) {
                break;
            }
            tail = &tail[tail.find(word).unwrap() + word.len()..];
            path = longer;
        }
        return Some((path, tail));
    }
    None
}

/// The command lines of a code block: `\` continuations joined, `# comments` cut off.
fn command_lines(block: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = if line.trim_start().starts_with('#') { "" } else { line.split(" #").next().unwrap_or_default() };
        match line.trim_end().strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

/// Every `--flag` that README.md and docs/*.md show, in code blocks, inline code and prose,
/// exists: it is printed by `stylestream --help` or the `--help` of one of its commands (all of
/// them, walked from the CLI's definition). Where a code line or an inline span runs a command
/// (`stylestream stylize ... --workers 2`), its flags must be that command's own.
///
/// The help text is rendered in-process from `stylestream::cli::Cli`, the definition the binary
/// parses with, rather than by running `CARGO_BIN_EXE_stylestream --help`: several checkouts
/// share one target directory here, and another checkout's build can replace the binary between
/// cargo building it and this test running it. It is the same text the binary prints.
///
/// Flags of other programs are excused only on a line or span that names the program
/// (`OTHER_PROGRAMS`: cargo's `--test`, ..., aws's `--bucket` and `--lifecycle-configuration`,
/// `scripts/bench_onnxruntime.py`'s `--stylestream`, ...). Hidden flags (the failure-injection
/// hook) are not in the help, so the manuals may not name them.
#[test]
fn every_flag_the_manuals_show_exists() {
    let commands = help_flags();
    let all: BTreeSet<&String> = commands.values().flatten().collect();
    for (command, flag) in
        [("stylize", "--allow-public-cluster"), ("stylize", "--workers"), ("models fetch", "--sha256"), ("", "--log")]
    {
        assert!(commands[command].contains(flag), "the help of `{command}` lacks {flag}: {commands:?}");
    }
    assert!(!all.iter().any(|f| f.as_str() == "--fail-frame"), "a hidden flag is in the help");

    let mut problems = Vec::new();
    for (name, text) in manuals() {
        for line in text.lines() {
            for flag in flags_in(line) {
                if !all.contains(&flag) && !other_program(&flag, line) {
                    problems.push(format!("{name}: {flag} is no option of any command: {}", line.trim()));
                }
            }
        }
        let parts = parts(&text);
        let units = parts.blocks.iter().flat_map(|(_, body)| command_lines(body)).chain(inline_spans(&parts.prose));
        for unit in units {
            let Some((command, tail)) = stylestream_command(&unit, &commands) else { continue };
            for flag in flags_in(tail) {
                if all.contains(&flag) && !commands[&command].contains(&flag) && !other_program(&flag, &unit) {
                    problems.push(format!("{name}: `stylestream {command}` has no {flag}: {unit}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "flags in the manuals that stylestream does not have:\n{}", problems.join("\n"));
}

/// One segment of a key path: a table key, or "an element of this array of tables".
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Element,
}

fn show(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => k.clone(),
            Seg::Element => "[]".into(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The top-level tables of the service configuration; other paths belong to a run configuration.
const SERVICE_SECTIONS: &[&str] = &["broker", "storage", "models", "service", "dataflow", "routes"];

fn is_word(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The key a piece of inline code names, if it names one:
/// `service.job_timeout_secs` (a dotted path under a known table, not a file name such as
/// `service.toml`), `[service.media_limits]` or `[[routes]]` (a table), `[cluster] hosts` (a key
/// of a table), or `name = value` (a key of some table: `None` path, `Some(name)` leaf).
enum Named {
    Path(Vec<Seg>),
    Leaf(String),
}

fn named_key(span: &str) -> Option<Named> {
    let (key, assigned) = match span.split_once(" = ") {
        Some((k, _)) => (k.trim(), true),
        None => (span.trim(), false),
    };
    let dotted = |s: &str| -> Option<Vec<Seg>> {
        let segs: Vec<&str> = s.split('.').collect();
        segs.iter().all(|s| is_word(s)).then(|| segs.iter().map(|s| Seg::Key(s.to_string())).collect())
    };
    if let Some(inner) = key.strip_prefix("[[").and_then(|k| k.strip_suffix("]]")) {
        return dotted(inner).map(|mut p| {
            p.push(Seg::Element);
            Named::Path(p)
        });
    }
    if let Some((table, rest)) = key.strip_prefix('[').and_then(|k| k.split_once(']')) {
        let mut path = dotted(table)?;
        let rest = rest.trim();
        if !rest.is_empty() {
            path.extend(dotted(rest)?);
        }
        return Some(Named::Path(path));
    }
    const FILE_EXTENSIONS: &[&str] =
        &["toml", "json", "jsonl", "yaml", "yml", "rs", "md", "env", "py", "sh", "txt", "wgsl"];
    if key.contains('.') {
        let path = dotted(key)?;
        let (Seg::Key(first), Seg::Key(last)) = (&path[0], &path[path.len() - 1]) else { return None };
        let known = SERVICE_SECTIONS.contains(&first.as_str()) || first == "cluster";
        return (known && !FILE_EXTENSIONS.contains(&last.as_str())).then_some(Named::Path(path));
    }
    (assigned && is_word(key)).then(|| Named::Leaf(key.to_string()))
}

/// Every key path of a parsed TOML document (tables, their keys, array-of-table elements).
fn key_paths(table: &toml::Table, prefix: &[Seg], out: &mut Vec<Vec<Seg>>) {
    for (k, v) in table {
        let mut path = prefix.to_vec();
        path.push(Seg::Key(k.clone()));
        out.push(path.clone());
        match v {
            toml::Value::Table(t) => key_paths(t, &path, out),
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) && !items.is_empty() => {
                path.push(Seg::Element);
                out.push(path.clone());
                for item in items {
                    key_paths(item.as_table().unwrap(), &path, out);
                }
            }
            _ => {}
        }
    }
}

/// The value at `path` in `table` (for an element: the array's first).
fn value_at<'a>(table: &'a toml::Table, path: &[Seg]) -> Option<&'a toml::Value> {
    let (Seg::Key(first), rest) = path.split_first()? else { return None };
    let mut value = table.get(first)?;
    for seg in rest {
        value = match seg {
            Seg::Key(k) => value.as_table()?.get(k)?,
            Seg::Element => value.as_array()?.first()?,
        };
    }
    Some(value)
}

/// `base` with `path` set (to an empty table, whose type does not matter: serde refuses an
/// unknown field by its name, before it reads the value). `None` when `path` runs through a
/// value that is not a table.
fn with_path(base: &toml::Table, path: &[Seg]) -> Option<toml::Table> {
    fn set(table: &mut toml::Table, path: &[Seg]) -> Option<()> {
        let Seg::Key(k) = &path[0] else { return None };
        if path.len() == 1 {
            table.insert(k.clone(), toml::Value::Table(toml::Table::new()));
            return Some(());
        }
        if path[1] == Seg::Element {
            let items = table.entry(k.clone()).or_insert_with(|| toml::Value::Array(vec![]));
            let items = items.as_array_mut()?;
            if items.is_empty() {
                items.push(toml::Value::Table(toml::Table::new()));
            }
            return if path.len() == 2 { Some(()) } else { set(items[0].as_table_mut()?, &path[2..]) };
        }
        let next = table.entry(k.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        set(next.as_table_mut()?, &path[1..])
    }
    let mut table = base.clone();
    set(&mut table, path)?;
    Some(table)
}

/// Whether a loader takes `table` without refusing a field as unknown (every struct of both
/// configurations is `deny_unknown_fields`; a wrong type or value is another error).
fn no_unknown_field<T>(
    table: &toml::Table,
    load: impl Fn(&Path) -> Result<T, stylestream::config::ConfigError>,
) -> bool {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temporary file");
    std::fs::write(file.path(), toml::to_string(table).expect("TOML")).expect("write");
    match load(file.path()) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains("unknown field"),
    }
}

struct Keys {
    service: toml::Table,
    service_paths: Vec<Vec<Seg>>,
}

impl Keys {
    fn new() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/service.toml");
        ServiceConfig::load(&path).unwrap_or_else(|e| panic!("config/service.toml does not load: {e}"));
        let service: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut service_paths = Vec::new();
        key_paths(&service, &[], &mut service_paths);
        Keys { service, service_paths }
    }

    /// Whether `path` is a key of the service configuration (its first segment is one of its
    /// sections) or else of a run configuration: set in config/service.toml, or accepted by the
    /// loader when added to it (run configuration: to an empty file).
    fn exists(&self, path: &[Seg]) -> bool {
        let Some(Seg::Key(first)) = path.first() else { return false };
        if SERVICE_SECTIONS.contains(&first.as_str()) {
            value_at(&self.service, path).is_some()
                || with_path(&self.service, path).is_some_and(|t| no_unknown_field(&t, ServiceConfig::load))
        } else {
            with_path(&toml::Table::new(), path).is_some_and(|t| no_unknown_field(&t, RunConfig::load))
        }
    }

    /// Whether `leaf` is a key of some table of either configuration.
    fn exists_anywhere(&self, leaf: &str) -> bool {
        let mut parents: Vec<Vec<Seg>> = vec![vec![], vec![Seg::Key("cluster".into())]];
        parents.extend(
            self.service_paths
                .iter()
                .filter(|p| value_at(&self.service, p).is_some_and(toml::Value::is_table))
                .cloned(),
        );
        parents.push(vec![Seg::Key("storage".into()), Seg::Key("options".into())]);
        parents.push(vec![Seg::Key("dataflow".into()), Seg::Key("cluster".into())]);
        parents.into_iter().any(|mut p| {
            p.push(Seg::Key(leaf.into()));
            self.exists(&p)
        })
    }
}

/// Every configuration key that README.md and docs/*.md show exists:
/// * in inline code, a dotted key under a section of either configuration
///   (`service.job_timeout_secs`, `broker.retry_budget_secs`, `cluster.hosts`; not file names
///   such as `service.toml`), a table (`[service.media_limits]`, `[dataflow]`, `[[routes]]`,
///   `[cluster]`), a table's key (`[cluster] hosts`), or `key = value` (a key of some table);
/// * in ```toml code blocks, every key and table (the block must parse).
///
/// A path whose first segment is a service section (`broker`, `storage`, `models`, `service`,
/// `dataflow`, `routes`) is a service-configuration key, any other a run-configuration key. A key
/// set in `config/service.toml` (which must itself load with `ServiceConfig::load`) exists; one
/// that is not there (a commented or defaulted key) is added to that file, or for a run
/// configuration to an empty one, and loaded with `ServiceConfig::load` / `RunConfig::load`:
/// every struct of both is `deny_unknown_fields`, so an unknown key is refused by name ("unknown
/// field"), while a real key with a placeholder value fails, if at all, for its value. Bare key
/// names in prose (`prefetch`) are not checked: they cannot be told from event or JSON fields.
#[test]
fn every_configuration_key_the_manuals_show_exists() {
    let keys = Keys::new();
    // The probe tells real keys from made-up ones, at every depth and in both configurations.
    let path =
        |s: &str| s.split('.').map(|k| if k == "[]" { Seg::Element } else { Seg::Key(k.into()) }).collect::<Vec<_>>();
    for real in [
        "service.work_dir",
        "service.max_prefix_frames",
        "storage.options.part_size_bytes",
        "dataflow.cluster.hosts",
        "routes.[].format",
        "cluster.process",
        "gpus",
    ] {
        assert!(keys.exists(&path(real)), "{real} is a key");
    }
    for made_up in [
        "service.no_such_key",
        "no_such_section",
        "storage.options.no_such",
        "dataflow.no_such",
        "routes.[].no_such",
        "cluster.no_such",
        "no_such",
        "service.jobs.deeper",
    ] {
        assert!(!keys.exists(&path(made_up)), "{made_up} is not a key");
    }
    assert!(keys.exists_anywhere("trigger") && keys.exists_anywhere("max_frames") && !keys.exists_anywhere("no_such"));

    let mut problems = Vec::new();
    let mut checked = 0;
    for (name, text) in manuals() {
        let parts = parts(&text);
        for span in inline_spans(&parts.prose) {
            let ok = match named_key(&span) {
                None => continue,
                Some(Named::Path(p)) => keys.exists(&p),
                Some(Named::Leaf(leaf)) => keys.exists_anywhere(&leaf),
            };
            checked += 1;
            if !ok {
                problems.push(format!("{name}: `{span}` is no configuration key"));
            }
        }
        for (_, body) in parts.blocks.iter().filter(|(lang, _)| lang == "toml") {
            let table: toml::Table =
                toml::from_str(body).unwrap_or_else(|e| panic!("{name}: a toml block does not parse: {e}\n{body}"));
            let mut paths = Vec::new();
            key_paths(&table, &[], &mut paths);
            for p in paths {
                checked += 1;
                if !keys.exists(&p) {
                    problems.push(format!("{name}: `{}` (toml block) is no configuration key", show(&p)));
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} keys found in the manuals: is the extraction broken?");
    assert!(problems.is_empty(), "configuration keys in the manuals that the loaders refuse:\n{}", problems.join("\n"));
}
