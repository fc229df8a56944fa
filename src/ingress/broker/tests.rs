//! The broker's topology and settings, without a broker.

use super::*;

#[test]
fn passwords_are_redacted_and_refused_in_the_file() {
    assert_eq!(redact("amqp://u:s3cret@h:5672/%2f"), "amqp://u:***@h:5672/%2f");
    assert_eq!(redact("amqps://h/v"), "amqps://h/v");
    assert!(has_password("amqp://u:p@h"));
    assert!(!has_password("amqp://u@h"));
    assert!(!has_password("amqp://h:5672"));
    // Passwords holding @, : and / (unencoded, as people write them), and encoded ones.
    for (url, secret) in [
        ("amqp://u:p@ss@h:5672/%2f", "p@ss"),
        ("amqp://u:a:b@h/%2f", "a:b"),
        ("amqps://u:x/y@z@h:5671/v", "x/y@z"),
        ("amqp://u:p%40ss%2Fw@h/%2f", "p%40ss%2Fw"),
    ] {
        let r = redact(url);
        assert!(!r.contains(secret), "{url} -> {r}");
        assert!(r.starts_with("amqp") && r.contains("u:***@h"), "{url} -> {r}");
        assert!(has_password(url));
        let text = format!("could not connect to {url}: refused (user u, password {secret})");
        assert!(!scrub(&text, url).contains(secret), "{}", scrub(&text, url));
    }
    assert!(!scrub("bad password p@ss/w", "amqp://u:p%40ss%2Fw@h").contains("p@ss/w"));
    // Not a URL at all: not echoed.
    assert_eq!(redact("u:secret@host"), "<not an amqp:// URL>");
}
