//! Event parsing against hostile and well-formed messages of every kind.

use super::*;

/// The job requests of a message (segment and stitch messages have their own test).
fn parse(body: &[u8], max_bytes: usize, routes: &[Route], source: &Source) -> Result<Vec<JobRequest>, Poison> {
    super::parse(body, max_bytes, routes, source).map(|v| {
        v.into_iter()
            .map(|r| match r {
                Request::Job(j) => j,
                other => panic!("not a job: {other:?}"),
            })
            .collect()
    })
}

#[test]
fn segment_and_stitch_messages_name_a_checked_plan() {
    let p = |b: &[u8]| super::parse(b, 4096, &[], &Source::default());
    assert_eq!(p(&segment_message("video-1", 3)).unwrap(), [Request::Segment { plan: "video-1".into(), index: 3 }]);
    assert_eq!(p(&stitch_message("video-1")).unwrap(), [Request::Stitch { plan: "video-1".into() }]);
    assert_eq!(Request::Segment { plan: "v".into(), index: 2 }.id("x"), "v.s2");
    for bad in [
        r#"{"schema":"stylestream.segment/1","plan":"../../etc","segment":1}"#,
        r#"{"schema":"stylestream.segment/1","plan":"v"}"#,
        r#"{"schema":"stylestream.stitch/1","plan":"v","segment":1}"#,
        r#"{"schema":"stylestream.segment/1","plan":"v","segment":-1}"#,
        r#"{"schema":"stylestream.segment/1","plan":"v","segment":1,"input":"x"}"#,
    ] {
        assert_eq!(p(bad.as_bytes()).unwrap_err().code(), PoisonCode::InvalidEvent, "{bad}");
    }
}

fn media() -> Source {
    Source { bucket: Some("media".into()), account: None, prefix: String::new() }
}

fn routes() -> Vec<Route> {
    vec![
        Route {
            prefix: "incoming/udnie/".into(),
            style: "udnie".into(),
            output_prefix: "styled/udnie/".into(),
            output_frames_prefix: None,
            trigger: None,
            fps: None,
            format: None,
        },
        Route {
            prefix: "frames/".into(),
            style: "wave".into(),
            output_prefix: "styled/frames/".into(),
            output_frames_prefix: None,
            trigger: Some("_READY".into()),
            fps: Some(25.0),
            format: None,
        },
    ]
}

#[test]
fn control_messages_name_a_valid_job_id() {
    let ok = br#"{"schema":"stylestream.control/1","cancel":"job-7"}"#;
    assert!(is_control(ok));
    assert_eq!(parse_control(ok, 4096), Ok(Control::Cancel("job-7".into())));
    assert!(!is_control(br#"{"schema":"stylestream.job/1"}"#));
    let bad = br#"{"schema":"stylestream.control/1","cancel":"../x"}"#;
    assert_eq!(parse_control(bad, 4096).unwrap_err().code().as_str(), "invalid-event");
    let extra = br#"{"schema":"stylestream.control/1","cancel":"a","rm":"-rf"}"#;
    assert_eq!(parse_control(extra, 4096).unwrap_err().code().as_str(), "invalid-event");
}

#[test]
fn our_own_events_parse_and_bad_ones_say_why() {
    let j = parse(
        br#"{"schema":"stylestream.job/1","input":"in/a.mp4","style":"udnie","output":"out/a.mp4","crf":20}"#,
        4096,
        &[],
        &Source::default(),
    )
    .unwrap();
    assert_eq!(j[0].input, Input::Object("in/a.mp4".into()));
    assert_eq!(j[0].output, Output::Object("out/a.mp4".into()));
    assert_eq!(j[0].crf, Some(20));
    let e = |b: &[u8]| parse(b, 4096, &[], &Source::default()).unwrap_err().code().as_str();
    assert_eq!(e(b"{not json"), "malformed-json");
    assert_eq!(e(br#"{"schema":"stylestream.job/9","input":"a","style":"s","output":"o"}"#), "unknown-schema");
    assert_eq!(e(br#"{"schema":"stylestream.job/1","style":"s","output":"o"}"#), "invalid-event");
    assert_eq!(e(br#"{"schema":"stylestream.job/1","input":"a","style":"s","output":"o","evil":1}"#), "invalid-event");
    assert_eq!(e(br#"{"hello":"world"}"#), "unknown-schema");
    assert_eq!(parse(&vec![b' '; 5000], 4096, &[], &Source::default()).unwrap_err().code().as_str(), "oversized");
}

#[test]
fn storage_notifications_follow_the_routes() {
    let grid = br#"[{"eventType":"Microsoft.Storage.BlobCreated","subject":"/blobServices/default/containers/media/blobs/incoming/udnie/a b.mp4","data":{}}]"#;
    let j = parse(grid, 4096, &routes(), &media()).unwrap();
    assert_eq!(j[0].input, Input::Object("incoming/udnie/a b.mp4".into()));
    assert_eq!((j[0].style.as_str(), &j[0].output), ("udnie", &Output::Prefix("styled/udnie/".into())));
    let s3 = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"incoming/udnie/a+b%2B.mp4"}}}]}"#;
    assert_eq!(parse(s3, 4096, &routes(), &media()).unwrap()[0].input, Input::Object("incoming/udnie/a b+.mp4".into()));
    // Frames wait for their trigger; the trigger starts a job on the prefix.
    let frame = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"frames/shot1/00001.png"}}}]}"#;
    assert!(parse(frame, 4096, &routes(), &media()).unwrap().is_empty());
    let trigger = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"frames/shot1/_READY"}}}]}"#;
    let j = parse(trigger, 4096, &routes(), &media()).unwrap();
    assert_eq!(j[0].input, Input::Prefix("frames/shot1/".into()));
    assert_eq!(j[0].fps, Some(25.0));
    let stray = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"elsewhere/x.mp4"}}}]}"#;
    assert_eq!(parse(stray, 4096, &routes(), &media()).unwrap_err().code().as_str(), "no-route");
}

#[test]
fn frames_go_back_as_frames_from_events_and_routes() {
    let j = parse(br#"{"schema":"stylestream.job/1","input_prefix":"in/shot","style":"udnie","output_frames_prefix":"out/shot","jpeg_quality":80}"#, 4096, &[], &Source::default()).unwrap();
    assert_eq!(
        (&j[0].input, &j[0].output, j[0].jpeg_quality),
        (&Input::Prefix("in/shot/".into()), &Output::Frames("out/shot/".into()), Some(80))
    );
    let e = |b: &[u8]| parse(b, 4096, &[], &Source::default()).unwrap_err().to_string();
    assert!(e(br#"{"schema":"stylestream.job/1","input":"a.mp4","style":"udnie","output_frames_prefix":"o/"}"#)
        .contains("needs an `input_prefix`"));
    assert!(e(br#"{"schema":"stylestream.job/1","input_prefix":"a/","style":"udnie","output_frames_prefix":"o/","jpeg_quality":0}"#).contains("jpeg_quality"));
    assert!(e(br#"{"schema":"stylestream.job/1","input_prefix":"a/","style":"udnie","output_prefix":"o/","output_frames_prefix":"o/"}"#).contains("exactly one"));
    let route = Route {
        prefix: "up/".into(),
        style: "wave".into(),
        output_prefix: String::new(),
        output_frames_prefix: Some("styled".into()),
        trigger: Some("_READY".into()),
        fps: None,
        format: None,
    };
    let trigger = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"up/a/shot1/_READY"}}}]}"#;
    let j = parse(trigger, 4096, &[route], &media()).unwrap();
    assert_eq!(
        (&j[0].input, &j[0].output),
        (&Input::Prefix("up/a/shot1/".into()), &Output::Frames("styled/a/shot1/".into()))
    );
}

fn own(fields: &str) -> String {
    format!(r#"{{"schema":"stylestream.job/1",{fields}}}"#)
}

#[test]
fn every_field_of_our_schema_is_checked_or_mapped() {
    let ok = |f: &str| parse(own(f).as_bytes(), 65536, &[], &Source::default());
    let code = |f: &str| ok(f).unwrap_err().code().as_str();
    let base = r#""input":"in/a.mp4","style":"udnie","output_prefix":"out/""#;
    assert!(ok(base).is_ok());
    // ids name log objects: only a fixed alphabet.
    for id in ["../../etc/passwd", "/abs", "a/b", ".hidden", "-x", "a\u{0}b", "é", "", &"x".repeat(129)] {
        let f = format!(r#"{base},"id":{}"#, serde_json::to_string(id).unwrap());
        assert_eq!(code(&f), "invalid-event", "id {id:?}");
    }
    assert!(ok(&format!(r#"{base},"id":"job-1.a_b""#)).is_ok());
    // styles name model files.
    for style in ["../udnie", "/etc/passwd", "udnie.safetensors", "a b", "u\u{0}", "\u{202e}evil", ""] {
        let f =
            format!(r#""input":"in/a.mp4","style":{},"output_prefix":"out/""#, serde_json::to_string(style).unwrap());
        assert_eq!(code(&f), "unknown-style", "style {style:?}");
    }
    // keys: control characters and overlong values are refused here, the rest by the store.
    for key in ["in/\u{0}a.mp4", "in/a\nb.mp4", &format!("in/{}.mp4", "a".repeat(1100))] {
        let f = format!(r#""input":{},"style":"udnie","output_prefix":"out/""#, serde_json::to_string(key).unwrap());
        assert_eq!(code(&f), "invalid-key", "key {key:?}");
    }
    // formats, presets, crf and fps from fixed sets and ranges.
    for bad in [
        r#""format":"../../x""#,
        r#""format":"m3u8""#,
        r#""format":"tee""#,
        r#""preset":"placebo""#,
        r#""preset":"fast -x264opts""#,
        r#""crf":52"#,
        r#""fps":0"#,
        r#""fps":1e300"#,
        r#""fps":-1"#,
    ] {
        assert_eq!(code(&format!("{base},{bad}")), "invalid-event", "{bad}");
    }
    assert_eq!(ok(&format!(r#"{base},"format":".MKV""#)).unwrap()[0].format.as_deref(), Some("mkv"));
    for out in ["out/a.m3u8", "out/a", "out/list.txt", "out/a.mp4/"] {
        let f = format!(r#""input":"in/a.mp4","style":"udnie","output":"{out}""#);
        assert!(matches!(code(&f), "invalid-event"), "{out}");
    }
    // Unknown fields (a typo or an attack) are refused, not ignored.
    assert_eq!(code(&format!(r#"{base},"codec":"rawvideo""#)), "invalid-event");
}

#[test]
fn notifications_from_another_store_are_refused() {
    let s3 = |bucket: &str, key: &str| {
        format!(
            r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"{bucket}"}},"object":{{"key":"{key}"}}}}}}]}}"#
        )
    };
    let code = |b: &str, src: &Source| parse(b.as_bytes(), 4096, &routes(), src).unwrap_err().code().as_str();
    assert_eq!(code(&s3("other", "incoming/udnie/a.mp4"), &media()), "foreign-source");
    assert_eq!(code(&s3("media", "incoming/udnie/a.mp4"), &Source::default()), "foreign-source");
    let prefixed = Source { bucket: Some("media".into()), account: None, prefix: "root".into() };
    assert_eq!(code(&s3("media", "incoming/udnie/a.mp4"), &prefixed), "foreign-source");
    let j = parse(s3("media", "root/incoming/udnie/a.mp4").as_bytes(), 4096, &routes(), &prefixed).unwrap();
    assert_eq!(j[0].input, Input::Object("incoming/udnie/a.mp4".into()));
    let grid = |container: &str, account: &str| {
        format!(
            r#"{{"eventType":"Microsoft.Storage.BlobCreated","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/{account}","subject":"/blobServices/default/containers/{container}/blobs/incoming/udnie/a.mp4"}}"#
        )
    };
    let azure = Source { bucket: Some("media".into()), account: Some("acct".into()), prefix: String::new() };
    assert!(parse(grid("media", "acct").as_bytes(), 4096, &routes(), &azure).is_ok());
    assert_eq!(code(&grid("media", "evil"), &azure), "foreign-source");
    assert_eq!(code(&grid("other", "acct"), &azure), "foreign-source");
    // Encoded traversal in an S3 key decodes to a key the store refuses; NUL is refused here.
    assert_eq!(code(&s3("media", "incoming/udnie/%00.mp4"), &media()), "invalid-key");
}
