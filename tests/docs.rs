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
        assert!(list.contains(&format!("`{}`", code.as_str())), "the README's dead-letter list lacks `{code}`:\n{list}");
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
        assert!(PoisonCode::ALL.iter().any(|c| c.as_str() == word), "the README names `{word}`, which the service never sends");
    }
}
